// Package hub keeps track of the device streams connected to this process
// and hands frames to them without ever blocking on one.
//
// The hub is a fixed number of shards, each a map from user to that user's
// connected devices under its own RWMutex; no lock is held across a channel
// send or any I/O. Each device has at most one connection: a newer stream
// of the same device replaces the older one.
package hub

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/storage/analytics"
)

const numShards = 64

// Config sizes the per-connection buffers.
type Config struct {
	// QueueLen bounds each connection's outbound queue (frames). A device
	// whose queue is full is disconnected and told to resync.
	QueueLen int `yaml:"queue_len" env:"QUEUE_LEN"`
	// MaxPending bounds the live frames held back while a connection is
	// catching up.
	MaxPending int `yaml:"max_pending" env:"MAX_PENDING"`
}

// DefaultConfig returns the defaults: 1024 queued frames, 4096 held back.
func DefaultConfig() Config {
	return Config{QueueLen: 1024, MaxPending: 4096}
}

// Hub is the registry of connected devices. It is safe for concurrent use.
type Hub struct {
	cfg    Config
	seed   maphash.Seed
	nextID atomic.Uint64
	count  atomic.Int64
	m      *metrics.Hub
	events EventRecorder
	shards [numShards]shard
}

// EventRecorder takes analytics events (never message content). Record
// must not block: it is called while fanning out.
type EventRecorder interface {
	Record(e analytics.Event)
}

type shard struct {
	mu    sync.RWMutex
	users map[string]map[string]*Conn // user id -> device id -> conn
}

// New returns an empty hub.
func New(cfg Config) *Hub {
	h := &Hub{cfg: cfg, seed: maphash.MakeSeed()}
	for i := range h.shards {
		h.shards[i].users = make(map[string]map[string]*Conn)
	}
	return h
}

// SetMetrics makes the hub and its connections record into m (nil: no
// metrics). Call it before the first Register.
func (h *Hub) SetMetrics(m *metrics.Hub) { h.m = m }

// SetEvents makes the hub record a message_delivered event for every
// device a live message is handed to (the sender's other devices
// included; system notices excepted), with the send→deliver latency
// measured where parley_messages_delivery_latency_seconds is: from the
// message's commit time to the hand-over. Messages a device gets on
// catch-up after being away are not recorded: their latency is the time
// it was offline. nil records none. Call it before the first Register.
func (h *Hub) SetEvents(r EventRecorder) { h.events = r }

func (h *Hub) shard(userID string) *shard {
	return &h.shards[maphash.String(h.seed, userID)%numShards]
}

// Register adds a connection for a device in syncing mode. An existing
// connection of the same device is closed with ErrReplaced. firstOfUser
// reports whether the user had no connected device before.
func (h *Hub) Register(userID, deviceID string) (c *Conn, firstOfUser bool) {
	c = &Conn{
		id:         h.nextID.Add(1),
		userID:     userID,
		deviceID:   deviceID,
		queue:      newQueue(h.cfg.QueueLen),
		done:       make(chan struct{}),
		m:          h.m,
		repairs:    make(chan struct{}, 1),
		holding:    true,
		maxPending: h.cfg.MaxPending,
		last:       make(map[string]uint64),
	}
	s := h.shard(userID)
	s.mu.Lock()
	devices := s.users[userID]
	if devices == nil {
		devices = make(map[string]*Conn)
		s.users[userID] = devices
		firstOfUser = true
	}
	old := devices[deviceID]
	devices[deviceID] = c
	s.mu.Unlock()
	if old != nil {
		old.Close(ErrReplaced)
	} else {
		h.count.Add(1)
		h.m.DeviceAdded()
	}
	return c, firstOfUser
}

// Unregister removes c if it is still the device's current connection.
// lastOfUser reports whether the user has no connected device left.
func (h *Hub) Unregister(c *Conn) (lastOfUser bool) {
	s := h.shard(c.userID)
	s.mu.Lock()
	defer s.mu.Unlock()
	devices := s.users[c.userID]
	if devices[c.deviceID] != c {
		return false
	}
	delete(devices, c.deviceID)
	h.count.Add(-1)
	h.m.DeviceRemoved()
	if len(devices) == 0 {
		delete(s.users, c.userID)
		return true
	}
	return false
}

// Online reports whether the user has a connected device.
func (h *Hub) Online(userID string) bool {
	s := h.shard(userID)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.users[userID]) > 0
}

// Count is the number of connected devices.
func (h *Hub) Count() int { return int(h.count.Load()) }

// DeliverToUser hands f to every connected device of the user except the
// one named by exceptDevice (may be empty). It returns how many devices
// accepted it. Devices that cannot take it are disconnected.
func (h *Hub) DeliverToUser(userID, exceptDevice string, f *parleyv1.ServerFrame) int {
	conns := h.userConns(userID)
	n := 0
	for _, c := range conns {
		if c.deviceID == exceptDevice {
			continue
		}
		if c.Deliver(f) {
			n++
		}
	}
	return n
}

// DeliverToDevice hands f to one device's connection, if it is connected
// here. It reports whether the device took it.
func (h *Hub) DeliverToDevice(userID, deviceID string, f *parleyv1.ServerFrame) bool {
	s := h.shard(userID)
	s.mu.RLock()
	c := s.users[userID][deviceID]
	s.mu.RUnlock()
	return c != nil && c.Deliver(f)
}

// CloseDevice closes the device's connection, if any, with reason.
func (h *Hub) CloseDevice(userID, deviceID string, reason error) {
	s := h.shard(userID)
	s.mu.RLock()
	c := s.users[userID][deviceID]
	s.mu.RUnlock()
	if c != nil {
		c.Close(reason)
	}
}

// CloseAll closes every connection with reason.
func (h *Hub) CloseAll(reason error) {
	h.Each(func(c *Conn) { c.Close(reason) })
}

// userConns snapshots a user's connections so delivery happens outside the
// shard lock. The slice is small (devices of one user).
func (h *Hub) userConns(userID string) []*Conn {
	s := h.shard(userID)
	s.mu.RLock()
	devices := s.users[userID]
	if len(devices) == 0 {
		s.mu.RUnlock()
		return nil
	}
	conns := make([]*Conn, 0, len(devices))
	for _, c := range devices {
		conns = append(conns, c)
	}
	s.mu.RUnlock()
	return conns
}

// CloseDeviceAnyUser closes the connection of a device whose user is not
// known to the caller. It scans every shard, which is fine for rare events
// such as a session revocation.
func (h *Hub) CloseDeviceAnyUser(deviceID string, reason error) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		var found *Conn
		for _, devices := range s.users {
			if c, ok := devices[deviceID]; ok {
				found = c
				break
			}
		}
		s.mu.RUnlock()
		if found != nil {
			found.Close(reason)
			return
		}
	}
}

// Delivery is one frame for every connected device of some users. A
// sender's own device can get a different frame (its SendAck) instead.
type Delivery struct {
	Frame *parleyv1.ServerFrame
	Users []string
	// Ack, when set, goes to device AckDevice of user AckUser instead of
	// Frame.
	Ack       *parleyv1.ServerFrame
	AckUser   string
	AckDevice string
}

// Route hands each delivery to the devices connected here, in order.
func (h *Hub) Route(_ context.Context, ds []Delivery) {
	// One clock reading for the send→deliver latency of the whole batch
	// (a commit's fan-out), which takes far less than a histogram bucket.
	var now time.Time
	if h.m != nil || h.events != nil {
		now = time.Now()
	}
	for _, d := range ds {
		h.deliver(d, now)
	}
}

// Deliver hands one delivery to the devices connected here.
func (h *Hub) Deliver(d Delivery) {
	var now time.Time
	if h.m != nil || h.events != nil {
		now = time.Now()
	}
	h.deliver(d, now)
}

// deliver is Deliver, with now the time the delivery is handed over
// (zero without metrics and events).
func (h *Hub) deliver(d Delivery, now time.Time) {
	if d.Ack != nil {
		h.DeliverToDevice(d.AckUser, d.AckDevice, d.Ack)
	}
	msg := d.Frame.GetMessage()
	// System notices (joins, recalls) are not sent by anyone: like the
	// engine's message_sent, delivered counts users' messages only.
	record := h.events != nil && msg.GetCreatedAt() != nil && msg.GetKind() != parleyv1.MessageKind_MESSAGE_KIND_SYSTEM
	n := 0
	for _, u := range d.Users {
		except := ""
		if d.Ack != nil && u == d.AckUser {
			except = d.AckDevice
		}
		if !record {
			n += h.DeliverToUser(u, except, d.Frame)
			continue
		}
		for _, c := range h.userConns(u) {
			if c.deviceID == except || !c.Deliver(d.Frame) {
				continue
			}
			n++
			h.events.Record(analytics.Event{
				Kind: analytics.EventMessageDelivered, At: now, UserID: u, DeviceID: c.deviceID,
				ConversationID: msg.GetConversationId(), Seq: msg.GetSeq(),
				Latency: now.Sub(msg.GetCreatedAt().AsTime()),
			})
		}
	}
	if n > 0 && h.m != nil {
		if created := d.Frame.GetMessage().GetCreatedAt(); created != nil {
			h.m.Handed(created.AsTime(), now)
		}
	}
}

// Each calls fn for every connection, outside the hub's locks.
func (h *Hub) Each(fn func(*Conn)) {
	for i := range h.shards {
		s := &h.shards[i]
		s.mu.RLock()
		var conns []*Conn
		for _, devices := range s.users {
			for _, c := range devices {
				conns = append(conns, c)
			}
		}
		s.mu.RUnlock()
		for _, c := range conns {
			fn(c)
		}
	}
}
