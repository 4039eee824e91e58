package hub

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/internal/fifo"
	"github.com/parley-im/parley/server/metrics"
)

// Reasons a connection ends. They travel to the client in a Resync frame and
// to the handler through Conn.Err.
var (
	// ErrSlowConsumer: the device could not keep up; its queue overflowed.
	ErrSlowConsumer = errors.New("slow consumer: outbound queue full")
	// ErrReplaced: the same device opened a newer stream.
	ErrReplaced = errors.New("replaced by a newer stream of this device")
	// ErrShutdown: the server is shutting down.
	ErrShutdown = errors.New("server shutting down")
	// ErrRevoked: the device's session was revoked.
	ErrRevoked = errors.New("session revoked")
	// ErrHeartbeatTimeout: the device was silent past the heartbeat timeout.
	ErrHeartbeatTimeout = errors.New("heartbeat timeout")
)

// Conn is one device stream registered in the hub. Frames reach the device
// only through its bounded queue, drained by a single writer (Run), so the
// hub never blocks on a slow device: Deliver either enqueues at once or
// closes the connection.
//
// A Conn keeps each conversation's messages in seq order with no gaps,
// whatever order they arrive in. It remembers the last seq it handed to
// the device per conversation; a live message that is not the next one
// (in a cluster, two processes' fan-outs of one conversation can arrive
// in either order) switches the connection to holding: live frames wait,
// bounded, while the connection's repairer (the session's sync goroutine,
// woken by Repairs) fills the gap from the store with Push and then calls
// Release. Messages at or below the last seq are dropped: the device has
// them.
//
// A Conn starts holding, for catch-up: the catch-up producer streams the
// backlog through Push, records the conversations' positions with SetLast
// and calls Release.
type Conn struct {
	id       uint64
	userID   string
	deviceID string
	queue    *queue
	done     chan struct{}
	// m is the hub's metrics (nil: none).
	m *metrics.Hub

	closeOnce sync.Once
	err       atomic.Pointer[error]

	// repairs wakes the repairer (capacity 1).
	repairs chan struct{}

	mu sync.Mutex
	// holding: live frames go to pending instead of the queue.
	holding    bool
	pending    []*parleyv1.ServerFrame
	maxPending int
	// last is the seq of the newest message handed to the queue, per
	// conversation; a conversation missing from it has no known position
	// (the device joined it after catch-up began).
	last map[string]uint64
	// gap is the hole found at the head of pending, waiting for repair.
	gap *Gap
	// recheck asks the repairer to compare every conversation with the
	// store (live frames may have been lost between processes).
	recheck bool
}

// Gap is a hole in a conversation's messages on one connection: the first
// message waiting is Before, and the device has less than Before-1 (see
// Last; it may have no position in the conversation at all).
type Gap struct {
	ConversationID string
	Before         uint64
}

// ID is unique per hub.
func (c *Conn) ID() uint64 { return c.id }

// UserID is the user the stream belongs to.
func (c *Conn) UserID() string { return c.userID }

// DeviceID is the device the stream belongs to.
func (c *Conn) DeviceID() string { return c.deviceID }

// Done is closed when the connection is closed.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err is why the connection closed, or nil while it is open.
func (c *Conn) Err() error {
	if p := c.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Close closes the connection with a reason; only the first call counts.
// It never blocks.
func (c *Conn) Close(reason error) {
	c.closeOnce.Do(func() {
		c.err.Store(&reason)
		close(c.done)
	})
}

// Repairs is signalled when the connection holds frames behind a gap or a
// recheck was requested; the repairer then calls TakeRepair, fills what it
// names with Push and SetLast, and calls Release.
func (c *Conn) Repairs() <-chan struct{} { return c.repairs }

// verdict is what to do with a live frame.
type verdict int

const (
	admit verdict = iota // hand it to the device
	stale                // the device already has it
	hole                 // messages before it are missing
)

// sequenced returns the message a frame carries in its conversation's
// order: a Message, or a new message's SendAck (the sender's own copy).
// A duplicate's SendAck answers a retry out of band and is not ordered.
func sequenced(f *parleyv1.ServerFrame) *parleyv1.Message {
	if m := f.GetMessage(); m != nil {
		return m
	}
	if a := f.GetSendAck(); a != nil && !a.GetDuplicate() {
		return a.GetMessage()
	}
	return nil
}

// judgeLocked decides a frame's fate and, when it is admitted, advances the
// conversation's position. c.mu is held.
func (c *Conn) judgeLocked(f *parleyv1.ServerFrame) verdict {
	m := sequenced(f)
	if m == nil {
		return admit
	}
	conv, seq := m.GetConversationId(), m.GetSeq()
	last, known := c.last[conv]
	switch {
	case known && seq <= last:
		if f.GetSendAck() != nil {
			// The device has the message (the backlog carried it), but
			// the sender still needs the answer to its send.
			return admit
		}
		return stale
	case known && seq == last+1, !known && seq == 1:
		c.last[conv] = seq
		return admit
	default:
		c.gap = &Gap{ConversationID: conv, Before: seq}
		return hole
	}
}

// wakeRepairer signals Repairs without blocking.
func (c *Conn) wakeRepairer() { fifo.Signal(c.repairs) }

// Deliver hands a live frame to the connection without blocking. While the
// connection is holding the frame waits in pending; when pending or the
// queue is full, the connection is closed with ErrSlowConsumer and false
// is returned.
func (c *Conn) Deliver(f *parleyv1.ServerFrame) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	c.mu.Lock()
	if c.holding {
		if m := f.GetMessage(); m != nil {
			if last, ok := c.last[m.GetConversationId()]; ok && m.GetSeq() <= last {
				c.mu.Unlock()
				return true
			}
		}
		return c.holdLocked(f)
	}
	switch c.judgeLocked(f) {
	case stale:
		c.mu.Unlock()
		return true
	case hole:
		c.holding = true
		c.wakeRepairer()
		return c.holdLocked(f)
	}
	// Enqueued under c.mu, so concurrent deliverers (the local fan-out and
	// the cluster consumer) cannot swap two frames after judging them.
	depth := c.queue.TryPush(f, c.queue.Max())
	c.mu.Unlock()
	if depth == 0 {
		c.Close(ErrSlowConsumer)
		return false
	}
	c.m.Enqueued(depth, f.GetMessage() != nil, true)
	return true
}

// holdLocked appends f to pending and unlocks c.mu.
func (c *Conn) holdLocked(f *parleyv1.ServerFrame) bool {
	if len(c.pending) >= c.maxPending {
		c.mu.Unlock()
		c.Close(ErrSlowConsumer)
		return false
	}
	c.pending = append(c.pending, f)
	c.mu.Unlock()
	return true
}

// Push enqueues a frame from the store (catch-up or repair), waiting for
// room in the queue, and advances its conversation's position. It is for
// the repairer while the connection is holding. Returns false when the
// connection closed or ctx ended.
func (c *Conn) Push(ctx context.Context, f *parleyv1.ServerFrame) bool {
	return c.push(ctx, f, false)
}

// push is Push; live says f is a live frame held back, not one read from
// the store.
func (c *Conn) push(ctx context.Context, f *parleyv1.ServerFrame, live bool) bool {
	m := f.GetMessage()
	for {
		if depth := c.queue.TryPush(f, storeShare(c.queue)); depth > 0 {
			if m != nil {
				c.SetLast(m.GetConversationId(), m.GetSeq())
			}
			c.m.Enqueued(depth, m != nil, live)
			return true
		}
		select {
		case <-c.queue.Space():
		case <-c.done:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// SetLast records that the device has a conversation up to seq (it only
// ever moves forward).
func (c *Conn) SetLast(conversationID string, seq uint64) {
	c.mu.Lock()
	if last, ok := c.last[conversationID]; !ok || seq > last {
		c.last[conversationID] = seq
	}
	c.mu.Unlock()
}

// Last returns the seq the device has of a conversation, if known.
func (c *Conn) Last(conversationID string) (uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seq, ok := c.last[conversationID]
	return seq, ok
}

// Recheck asks the repairer to compare every conversation with the store,
// holding live frames meanwhile: frames may have been lost on their way
// between processes (the broker was down).
func (c *Conn) Recheck() {
	c.mu.Lock()
	c.recheck = true
	c.holding = true
	c.mu.Unlock()
	c.wakeRepairer()
}

// TakeRepair returns what the repairer must do: fill the gap (when ok) and
// recheck every conversation (when recheck). Both are cleared.
func (c *Conn) TakeRepair() (gap Gap, ok, recheck bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gap != nil {
		gap, ok = *c.gap, true
		c.gap = nil
	}
	recheck, c.recheck = c.recheck, false
	return gap, ok, recheck
}

// PushDrainMarker queues a nil frame behind everything handed to the
// connection so far, held-back frames included; Next returns it when all
// of those were taken. Returns false when the connection closed or ctx
// ended first.
func (c *Conn) PushDrainMarker(ctx context.Context) bool {
	c.mu.Lock()
	if c.holding {
		c.pending = append(c.pending, nil)
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	return c.Push(ctx, nil)
}

// Release hands the held frames to the queue in order, dropping messages
// the device already has, and switches the connection to live mode. When a
// held message shows another gap, it stops there, stays holding and wakes
// the repairer again. Returns false when the connection closed or ctx
// ended first.
func (c *Conn) Release(ctx context.Context) bool {
	for {
		c.mu.Lock()
		if c.gap != nil || c.recheck {
			// A repair is already owed; it releases again afterwards.
			c.mu.Unlock()
			c.wakeRepairer()
			return true
		}
		if len(c.pending) == 0 {
			c.pending = nil
			c.holding = false
			c.mu.Unlock()
			return true
		}
		f := c.pending[0]
		v := c.judgeLocked(f)
		if v == hole {
			c.mu.Unlock()
			c.wakeRepairer()
			return true
		}
		c.pending[0] = nil
		c.pending = c.pending[1:]
		c.mu.Unlock()
		// Deliver keeps appending to pending meanwhile (the connection is
		// still holding), so order is kept while this waits for room.
		if v == admit && !c.push(ctx, f, true) {
			return false
		}
	}
}

// Next returns the next queued frame (nil for a drain marker), or false
// once the connection is closed. It is for the single writer that drains
// the queue.
func (c *Conn) Next(ctx context.Context) (*parleyv1.ServerFrame, bool) {
	for {
		if f, ok := c.queue.Pop(); ok {
			return f, true
		}
		select {
		case <-c.queue.Ready():
		case <-c.done:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}
