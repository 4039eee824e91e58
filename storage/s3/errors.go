package s3

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/minio/minio-go/v7"

	"github.com/parley-im/parley/storage"
)

// unavailableCodes are S3 error codes that go away by retrying later.
var unavailableCodes = map[string]bool{
	"SlowDown":             true,
	"ServiceUnavailable":   true,
	"InternalError":        true,
	"RequestTimeout":       true,
	"RequestTimeTooSkewed": false, // a clock problem: retrying does not help
}

// wrapErr translates a minio-go error into Parley's sentinels, with op as
// context: context errors are returned as they are (also when minio-go
// reports them in its own words after ctx ended), NoSuchKey becomes
// storage.ErrNotFound, and failures to reach the server or answers that
// it is overloaded or failing (5xx, 429, SlowDown) become
// storage.ErrUnavailable. Other errors (access denied, a missing bucket)
// are wrapped as they are: retrying does not fix them.
func wrapErr(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var resp minio.ErrorResponse
	if errors.As(err, &resp) && (resp.Code != "" || resp.StatusCode != 0) {
		switch {
		case resp.Code == minio.NoSuchKey:
			return fmt.Errorf("s3: %s: %w", op, storage.ErrNotFound)
		case resp.Code == minio.NoSuchBucket:
			return fmt.Errorf("s3: %s: %w", op, err)
		case resp.StatusCode == http.StatusNotFound && resp.Code == "":
			// A HEAD has no body to name the error.
			return fmt.Errorf("s3: %s: %w", op, storage.ErrNotFound)
		case unavailableCodes[resp.Code], resp.StatusCode >= 500, resp.StatusCode == http.StatusTooManyRequests:
			return fmt.Errorf("s3: %s: %w: %w", op, storage.ErrUnavailable, err)
		default:
			return fmt.Errorf("s3: %s: %w", op, err)
		}
	}
	if isNetwork(err) {
		return fmt.Errorf("s3: %s: %w: %w", op, storage.ErrUnavailable, err)
	}
	return fmt.Errorf("s3: %s: %w", op, err)
}

// isNetwork reports whether err says the server could not be talked to:
// refused, reset, timed out, or cut short.
func isNetwork(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) ||
		errors.Is(err, syscall.ECONNREFUSED) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF)
}
