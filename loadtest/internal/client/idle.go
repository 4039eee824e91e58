package client

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// frameStream is what an idle stream needs of a ChatService.Connect
// stream, whichever transport carries it.
type frameStream interface {
	send(*parleyv1.ConnectRequest) error
	recv() (*parleyv1.ConnectResponse, error)
	closeSend() error
	// release frees the stream once nothing reads it any more.
	release()
}

// idleStream is a bare Connect stream that has finished catch-up and only
// reads (and pings when asked).
type idleStream struct {
	fs        frameStream
	cancel    context.CancelFunc
	heartbeat time.Duration
	nonce     uint64
	done      chan struct{}
	err       error
	closeOnce sync.Once
}

// openIdle reads fs through catch-up (until sync_complete), giving up when
// ctx ends, then keeps reading it in the background. cancel ends fs's own
// context; it is called on failure and by Close.
func openIdle(ctx context.Context, fs frameStream, cancel context.CancelFunc) (Idle, error) {
	idle := &idleStream{fs: fs, cancel: cancel, done: make(chan struct{})}
	// The handshake may not outlive ctx: give up on it when ctx ends.
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	for {
		res, err := fs.recv()
		if err != nil {
			fs.release()
			cancel()
			if errors.Is(err, io.EOF) {
				err = errors.New("client: server ended the stream during catch-up")
			}
			return nil, err
		}
		f := res.GetFrame()
		if w := f.GetWelcome(); w != nil {
			idle.heartbeat = heartbeatOf(w)
		}
		if f.GetSyncComplete() != nil {
			break
		}
	}
	go idle.read()
	return idle, nil
}

func (i *idleStream) read() {
	defer close(i.done)
	for {
		if _, err := i.fs.recv(); err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("client: server ended the stream")
			}
			i.err = err
			return
		}
	}
}

func (i *idleStream) Ping() error {
	i.nonce++
	return i.fs.send(&parleyv1.ConnectRequest{Frame: pingFrame(i.nonce)})
}

func (i *idleStream) HeartbeatInterval() time.Duration { return i.heartbeat }
func (i *idleStream) Done() <-chan struct{}            { return i.done }

func (i *idleStream) Err() error {
	select {
	case <-i.done:
		return i.err
	default:
		return nil
	}
}

// Close half-closes the stream, gives the server two seconds to end it,
// then cancels it.
func (i *idleStream) Close() error {
	i.closeOnce.Do(func() {
		_ = i.fs.closeSend()
		timer := time.NewTimer(2 * time.Second)
		select {
		case <-i.done:
		case <-timer.C:
		}
		timer.Stop()
		i.cancel()
		i.fs.release()
		<-i.done
	})
	return nil
}
