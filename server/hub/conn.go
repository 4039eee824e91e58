package hub

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
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
// A Conn starts in syncing mode: live frames are held back (bounded) while
// the catch-up producer streams the backlog through Push, and are released
// by EndSync after it, minus what the backlog already covered. That keeps
// per-conversation order across the switch from catch-up to live traffic.
type Conn struct {
	id       uint64
	userID   string
	deviceID string
	queue    *queue
	done     chan struct{}

	closeOnce sync.Once
	err       atomic.Pointer[error]

	mu         sync.Mutex
	syncing    bool
	pending    []*parleyv1.ServerFrame
	maxPending int
	// sentSeq is the highest seq per conversation pushed during catch-up;
	// held-back and later live messages at or below it are dropped, since
	// the backlog already carried them. Only backlog conversations are in
	// it.
	sentSeq map[string]uint64
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

// Deliver hands a live frame to the connection without blocking. While the
// connection is syncing the frame is held back; when the hold-back or the
// queue is full, the connection is closed with ErrSlowConsumer and false is
// returned.
func (c *Conn) Deliver(f *parleyv1.ServerFrame) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	c.mu.Lock()
	if m := f.GetMessage(); m != nil && len(c.sentSeq) > 0 && m.GetSeq() <= c.sentSeq[m.GetConversationId()] {
		// Committed before the backlog was read but fanned out after it:
		// the device already has it.
		c.mu.Unlock()
		return true
	}
	if c.syncing {
		if len(c.pending) >= c.maxPending {
			c.mu.Unlock()
			c.Close(ErrSlowConsumer)
			return false
		}
		c.pending = append(c.pending, f)
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	if c.queue.tryPush(f) {
		return true
	}
	c.Close(ErrSlowConsumer)
	return false
}

// Push enqueues a frame, waiting for room in the queue. It is for the
// catch-up producer, which may wait for its own device's writer. Returns
// false when the connection closed or ctx ended.
func (c *Conn) Push(ctx context.Context, f *parleyv1.ServerFrame) bool {
	if m := f.GetMessage(); m != nil {
		c.mu.Lock()
		if m.GetSeq() > c.sentSeq[m.GetConversationId()] {
			c.sentSeq[m.GetConversationId()] = m.GetSeq()
		}
		c.mu.Unlock()
	}
	for !c.queue.tryPush(f) {
		select {
		case <-c.queue.space:
		case <-c.done:
			return false
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// PushDrainMarker queues a nil frame behind everything handed to the
// connection so far, held-back frames included; Next returns it when all
// of those were taken. Returns false when the connection closed or ctx
// ended first.
func (c *Conn) PushDrainMarker(ctx context.Context) bool {
	c.mu.Lock()
	if c.syncing {
		c.pending = append(c.pending, nil)
		c.mu.Unlock()
		return true
	}
	c.mu.Unlock()
	return c.Push(ctx, nil)
}

// EndSync releases the frames held back during catch-up, skipping messages
// the backlog already delivered, and switches the connection to live mode.
// Returns false when the connection closed or ctx ended first.
func (c *Conn) EndSync(ctx context.Context) bool {
	for {
		c.mu.Lock()
		batch := c.pending
		c.pending = nil
		if len(batch) == 0 {
			c.syncing = false
			c.mu.Unlock()
			return true
		}
		c.mu.Unlock()
		// The lock is not held while waiting for room: Deliver keeps
		// appending to pending meanwhile and the next round takes those.
		for _, f := range batch {
			if m := f.GetMessage(); m != nil {
				c.mu.Lock()
				stale := m.GetSeq() <= c.sentSeq[m.GetConversationId()]
				c.mu.Unlock()
				if stale {
					continue
				}
			}
			if !c.Push(ctx, f) {
				return false
			}
		}
	}
}

// Next returns the next queued frame (nil for a drain marker), or false
// once the connection is closed. It is for the single writer that drains
// the queue.
func (c *Conn) Next(ctx context.Context) (*parleyv1.ServerFrame, bool) {
	for {
		if f, ok := c.queue.pop(); ok {
			return f, true
		}
		select {
		case <-c.queue.ready:
		case <-c.done:
			return nil, false
		case <-ctx.Done():
			return nil, false
		}
	}
}
