// Package fifo is a bounded first-in-first-out queue whose buffer grows
// with use instead of being allocated up front, for per-connection queues
// that are empty most of the time: at hundreds of thousands of
// connections, a buffer sized for the bound on every one of them is most
// of the memory.
package fifo

import "sync"

// Queue is safe for many producers and one consumer. Producers and the
// consumer wait on Space and Ready, wake-up signals of capacity 1: a waiter
// re-checks the queue after each one, so a signal is never lost and a
// spurious one is harmless.
type Queue[T any] struct {
	mu    sync.Mutex
	items []T
	head  int
	max   int
	keep  int
	ready chan struct{}
	space chan struct{}
}

// New returns an empty queue of at most max items. An emptied queue keeps
// a buffer of up to keep items for reuse (a busy queue empties often) and
// gives a larger one back.
func New[T any](max, keep int) *Queue[T] {
	return &Queue[T]{max: max, keep: keep, ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

// Max is the most items the queue holds.
func (q *Queue[T]) Max() int { return q.max }

// Ready is signalled after a push.
func (q *Queue[T]) Ready() <-chan struct{} { return q.ready }

// Space is signalled after a pop.
func (q *Queue[T]) Space() <-chan struct{} { return q.space }

// TryPush appends v unless the queue holds limit items (at most Max), and
// returns how many items the queue holds then; 0 means it was full and v
// was not appended.
func (q *Queue[T]) TryPush(v T, limit int) (depth int) {
	q.mu.Lock()
	depth = len(q.items) - q.head
	if depth >= min(limit, q.max) {
		q.mu.Unlock()
		return 0
	}
	q.items = append(q.items, v)
	q.mu.Unlock()
	Signal(q.ready)
	return depth + 1
}

// Pop removes the oldest item; ok is false when the queue is empty.
func (q *Queue[T]) Pop() (v T, ok bool) {
	q.mu.Lock()
	if q.head == len(q.items) {
		q.mu.Unlock()
		return v, false
	}
	var zero T
	v = q.items[q.head]
	q.items[q.head] = zero
	q.head++
	if q.head == len(q.items) {
		if cap(q.items) > q.keep {
			q.items = nil
		} else {
			q.items = q.items[:0]
		}
		q.head = 0
	}
	q.mu.Unlock()
	Signal(q.space)
	return v, true
}

// WakeConsumer signals Ready without pushing, for a consumer that must
// notice something else (the queue was closed by its owner).
func (q *Queue[T]) WakeConsumer() { Signal(q.ready) }

// Cap is the capacity of the buffer the queue holds now.
func (q *Queue[T]) Cap() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return cap(q.items)
}

// Signal wakes a waiter on c (capacity 1) without blocking.
func Signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
