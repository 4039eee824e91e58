package server

import (
	"sync/atomic"

	"github.com/parley-im/parley/server/internal/fifo"
)

// inflight is the FIFO of a stream's sends awaiting commit, from the read
// loop to the send-ack goroutine, holding at most max. Unlike a channel of
// that capacity, its buffer grows with use and is given back when empty:
// an idle stream holds none, where a 256-slot channel cost every stream
// 6 KiB.
type inflight struct {
	q      *fifo.Queue[pendingSend]
	closed atomic.Bool
}

func newInflight(max int) *inflight {
	return &inflight{q: fifo.New[pendingSend](max, 0)}
}

// push appends p, waiting while max sends are in flight. It returns false
// if done closes first.
func (f *inflight) push(p pendingSend, done <-chan struct{}) bool {
	for f.q.TryPush(p, f.q.Max()) == 0 {
		select {
		case <-f.q.Space():
		case <-done:
			return false
		}
	}
	return true
}

// pop returns the oldest send, waiting for one; ok is false once the queue
// is closed and empty.
func (f *inflight) pop() (pendingSend, bool) {
	for {
		if p, ok := f.q.Pop(); ok {
			return p, true
		}
		if f.closed.Load() {
			// close comes after the last push: a push that landed since
			// the Pop above is visible now, and is the last chance.
			return f.q.Pop()
		}
		<-f.q.Ready()
	}
}

// close ends pop once the queue is drained. push must not be called after.
func (f *inflight) close() {
	f.closed.Store(true)
	f.q.WakeConsumer()
}
