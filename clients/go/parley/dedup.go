package parley

import "sync"

// dedup remembers, per conversation, the highest seq admitted for the
// application. The server delivers each conversation in seq order, and a
// message may arrive again after a reconnect (delivered but not yet
// acknowledged), so anything at or below the mark is a repeat.
type dedup struct {
	mu   sync.Mutex
	last map[string]uint64 // conversation_id → highest admitted seq
}

func newDedup() *dedup { return &dedup{last: make(map[string]uint64)} }

// fresh reports whether seq is above the conversation's mark. It does not move
// the mark: call admit once the item is safely queued, so an item dropped with
// a broken connection is accepted again when it is redelivered.
func (d *dedup) fresh(conversationID string, seq uint64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return seq > d.last[conversationID]
}

// admit raises the conversation's mark to seq (never lowers it).
func (d *dedup) admit(conversationID string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if seq > d.last[conversationID] {
		d.last[conversationID] = seq
	}
}

// reset forgets every mark (the server's epoch changed).
func (d *dedup) reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.last)
}
