package server

import "sync"

// inflight is the FIFO of a stream's sends awaiting commit, from the read
// loop to the send-ack goroutine, holding at most max. Unlike a channel of
// that capacity, its buffer grows with use: an idle stream holds none,
// where a 256-slot channel cost every stream 6 KiB.
type inflight struct {
	mu     sync.Mutex
	items  []pendingSend
	head   int
	max    int
	closed bool
	// ready and space are wake-up signals (capacity 1); waiters re-check
	// after each one, so none is lost and a spurious one is harmless.
	ready chan struct{}
	space chan struct{}
}

func newInflight(max int) *inflight {
	return &inflight{max: max, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

// push appends p, waiting while max sends are in flight. It returns false
// if done closes first.
func (q *inflight) push(p pendingSend, done <-chan struct{}) bool {
	for {
		q.mu.Lock()
		if len(q.items)-q.head < q.max {
			q.items = append(q.items, p)
			q.mu.Unlock()
			wake(q.ready)
			return true
		}
		q.mu.Unlock()
		select {
		case <-q.space:
		case <-done:
			return false
		}
	}
}

// pop returns the oldest send, waiting for one; ok is false once the queue
// is closed and empty.
func (q *inflight) pop() (p pendingSend, ok bool) {
	for {
		q.mu.Lock()
		if q.head < len(q.items) {
			p = q.items[q.head]
			q.items[q.head] = pendingSend{}
			q.head++
			if q.head == len(q.items) {
				// Empty: let the buffer go, so a burst does not pin it.
				q.items, q.head = nil, 0
			}
			q.mu.Unlock()
			wake(q.space)
			return p, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return pendingSend{}, false
		}
		<-q.ready
	}
}

// close ends pop once the queue is drained. push must not be called after.
func (q *inflight) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	wake(q.ready)
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
