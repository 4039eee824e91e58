package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// exactReader reads a Put's r, which must hold exactly size bytes: it
// yields at most size bytes, turns an early end into an error, and
// checkEnd tells whether r really ends there. It also stops once ctx
// ends. Not safe for concurrent use: Put reads it in its own goroutine.
type exactReader struct {
	ctx       context.Context //nolint:containedctx // lives for one Put call
	r         io.Reader
	size      int64
	remaining int64
	err       error // the first failure, kept for Put's error
}

// left is the number of bytes still to read.
func (e *exactReader) left() int64 { return e.remaining }

// Read yields r's bytes up to size, then io.EOF. When r ends before size,
// or fails, or ctx has ended, it returns an error other than io.EOF.
func (e *exactReader) Read(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	if err := e.ctx.Err(); err != nil {
		return 0, e.fail(err)
	}
	if e.remaining == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.remaining {
		p = p[:e.remaining]
	}
	n, err := e.r.Read(p)
	e.remaining -= int64(n)
	switch {
	case err == nil:
		return n, nil
	case errors.Is(err, io.EOF):
		if e.remaining > 0 {
			return n, e.fail(fmt.Errorf("reader ended after %d of %d bytes: %w", e.size-e.remaining, e.size, io.ErrUnexpectedEOF))
		}
		// r ended exactly at size: checkEnd will see io.EOF again.
		return n, nil
	default:
		return n, e.fail(fmt.Errorf("read: %w", err))
	}
}

// checkEnd, once size bytes have been read, requires r to be at its end:
// an error when r yields another byte or fails.
func (e *exactReader) checkEnd() error {
	if e.err != nil {
		return e.err
	}
	if e.remaining != 0 {
		return e.fail(fmt.Errorf("checkEnd with %d bytes left", e.remaining))
	}
	if err := e.ctx.Err(); err != nil {
		return e.fail(err)
	}
	var one [1]byte
	// A reader may return 0, nil now and then; it may not do so forever.
	for range 100 {
		n, err := e.r.Read(one[:])
		switch {
		case n > 0:
			return e.fail(fmt.Errorf("reader holds more than %d bytes", e.size))
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return e.fail(fmt.Errorf("read: %w", err))
		}
	}
	return e.fail(fmt.Errorf("read: %w", io.ErrNoProgress))
}

// failure is the reader's first failure, or nil.
func (e *exactReader) failure() error { return e.err }

func (e *exactReader) fail(err error) error {
	e.err = err
	return err
}
