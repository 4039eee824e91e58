package parley

import "sync"

// acker coalesces acknowledgements: it keeps the highest seq handed to the
// application per conversation until the writer flushes them, either on its
// timer or as soon as batch messages were handed since the last flush.
//
// Acking seq N tells the server the device has everything up to N, so only
// seqs the application was actually handed are recorded, and they are handed
// in order per conversation.
type acker struct {
	batch int
	flush chan struct{} // capacity 1: "flush soon"

	mu      sync.Mutex
	gen     uint64 // epoch generation the pending acks belong to
	pending map[string]uint64
	count   int
}

func newAcker(batch int) *acker {
	return &acker{batch: batch, flush: make(chan struct{}, 1), pending: make(map[string]uint64)}
}

// handed records that the application received seq of a conversation. Items
// from an older epoch generation are ignored: their seqs mean nothing to the
// server's new history.
func (a *acker) handed(gen uint64, conversationID string, seq uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return
	}
	if seq > a.pending[conversationID] {
		a.pending[conversationID] = seq
	}
	a.count++
	if a.count >= a.batch {
		a.count = 0
		select {
		case a.flush <- struct{}{}:
		default:
		}
	}
}

// take returns the pending acks and clears them; nil when there are none.
func (a *acker) take() map[string]uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.count = 0
	if len(a.pending) == 0 {
		return nil
	}
	p := a.pending
	a.pending = make(map[string]uint64)
	return p
}

// restore puts back acks that could not be sent, keeping the higher seq where
// newer ones arrived meanwhile.
func (a *acker) restore(gen uint64, acks map[string]uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.gen {
		return
	}
	for conv, seq := range acks {
		if seq > a.pending[conv] {
			a.pending[conv] = seq
		}
	}
}

// reset drops every pending ack and moves to epoch generation gen.
func (a *acker) reset(gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gen = gen
	a.count = 0
	clear(a.pending)
}

// generation returns the epoch generation pending acks belong to.
func (a *acker) generation() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.gen
}
