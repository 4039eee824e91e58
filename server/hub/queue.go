package hub

import (
	"sync"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// shrinkCap is the capacity above which an emptied queue gives its buffer
// back, so a burst does not pin memory on an idle connection.
const shrinkCap = 64

// queue is a bounded FIFO of frames whose buffer grows with use instead of
// being allocated up front: an idle connection holds no buffer at all,
// which matters at hundreds of thousands of connections. It is safe for
// one producer side (many goroutines) and one consumer.
type queue struct {
	mu    sync.Mutex
	items []*parleyv1.ServerFrame
	head  int
	max   int
	// ready and space are wake-up signals (capacity 1): a waiter re-checks
	// the queue after each wake-up, so a signal is never lost and a
	// spurious one is harmless.
	ready chan struct{}
	space chan struct{}
}

// storeShare is the part of the queue that frames read from the store
// (catch-up, repair) may fill. They wait for room, while live frames are
// never waited for: a backlog that filled the whole queue would get the
// device dropped as a slow consumer by the next live message.
func (q *queue) storeShare() int { return max(q.max/2, 1) }

func newQueue(max int) *queue {
	return &queue{max: max, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

// tryPush appends f unless the queue holds limit frames (at most max),
// and returns how many frames the queue holds then; 0 means it was full
// and f was not appended.
func (q *queue) tryPush(f *parleyv1.ServerFrame, limit int) (depth int) {
	q.mu.Lock()
	depth = len(q.items) - q.head
	if depth >= min(limit, q.max) {
		q.mu.Unlock()
		return 0
	}
	q.items = append(q.items, f)
	q.mu.Unlock()
	signal(q.ready)
	return depth + 1
}

// pop removes the oldest frame; ok is false when the queue is empty.
func (q *queue) pop() (f *parleyv1.ServerFrame, ok bool) {
	q.mu.Lock()
	if q.head == len(q.items) {
		q.mu.Unlock()
		return nil, false
	}
	f = q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		if cap(q.items) > shrinkCap {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
	}
	q.mu.Unlock()
	signal(q.space)
	return f, true
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
