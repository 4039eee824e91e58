// Package route carries frames between the server processes of a cluster.
//
// Every process belongs to a shard (server/shard) and reads its shard's
// stream on the Broker with a consumer group of its own, named after the
// process (its node name), so every process of a shard sees every entry.
// A process that routes a batch of deliveries hands them to its own
// devices directly and publishes one entry per destination shard, its own
// included (the shard's other processes hold other devices of the same
// users), naming the recipients in that shard; readers skip their own
// entries.
//
// The broker is not the source of truth. Entries can arrive in a different
// order than their messages were committed (two processes publish
// independently) or not at all (the broker was down); hub.Conn keeps each
// device's messages in order and repairs holes from the store. When a
// publish fails, the process owes the cluster a recheck entry, published
// as soon as the broker answers again: every reader then has each of its
// devices compare its conversations with the store.
package route

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/server/shard"
	"github.com/parley-im/parley/storage"
)

// Config tunes a Cluster.
type Config struct {
	// Node names this process, unique in the cluster and stable across its
	// restarts (a StatefulSet pod name): it names the process's consumer
	// group, so a restarted process resumes where it stopped.
	Node string
	// PublishTimeout bounds a publish. Delivery waits for it, so a slow
	// broker slows live delivery by at most this much per commit; a
	// publish that times out is treated as lost.
	PublishTimeout time.Duration
	// RecheckRetry is how often a process that owes a recheck entry tries
	// to publish it.
	RecheckRetry time.Duration
}

// Broker is what a Cluster needs from the broker.
type Broker interface {
	PublishBatch(ctx context.Context, entries []storage.Entry) error
	Join(ctx context.Context, shard int, group string) error
	Consume(ctx context.Context, shard int, group string, handle func(ctx context.Context, payload []byte)) error
}

// Cluster routes deliveries to the devices of this process and, through
// the broker, to the other processes. It implements engine.Router.
type Cluster struct {
	cfg    Config
	hub    *hub.Hub
	broker Broker
	layout shard.Layout
	log    *slog.Logger
	m      *metrics.Route

	// owed is set when a publish failed: the other processes may have
	// missed deliveries and must recheck.
	owed atomic.Bool
	// failing is set from a failed publish until a recheck entry gets
	// through: meanwhile Route does not try the broker at all, so an
	// unreachable one costs delivery nothing (not a timeout per commit).
	failing atomic.Bool
}

// New returns a Cluster of layout's shard. Call Join before serving
// devices and Run to read the shard's stream.
func New(cfg Config, h *hub.Hub, broker Broker, layout shard.Layout, logger *slog.Logger) *Cluster {
	if cfg.PublishTimeout <= 0 {
		cfg.PublishTimeout = time.Second
	}
	if cfg.RecheckRetry <= 0 {
		cfg.RecheckRetry = 500 * time.Millisecond
	}
	return &Cluster{cfg: cfg, hub: h, broker: broker, layout: layout, log: logger.With(slog.String("node", cfg.Node))}
}

// SetMetrics makes the Cluster record its publishes and consumed entries
// in m (nil: no metrics). Call it before Join.
func (c *Cluster) SetMetrics(m *metrics.Route) { c.m = m }

// Join makes this process a reader of its shard's stream, so every entry
// published from now on reaches it. Call it before accepting devices: a
// device's catch-up must not miss what was published before the process
// started reading.
func (c *Cluster) Join(ctx context.Context) error {
	return c.broker.Join(ctx, c.layout.Shard, c.cfg.Node)
}

// Run reads the shard's stream and delivers its entries to the devices
// connected here, and publishes owed recheck entries, until ctx ends. It
// returns an error only when the broker refuses the stream for good.
func (c *Cluster) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { c.payDebts(ctx) })
	return c.broker.Consume(ctx, c.layout.Shard, c.cfg.Node, c.handle)
}

// Route implements engine.Router: it publishes one entry per destination
// shard, then hands the deliveries to the devices connected here.
// Publishing first means a sender is only acknowledged (its SendAck is
// among the local deliveries) once other processes can see the message;
// a process that dies in between never acknowledged it, so the sender
// retries and the retry is routed again.
func (c *Cluster) Route(ctx context.Context, ds []hub.Delivery) {
	if c.failing.Load() {
		// Paid by the recheck entry payDebts publishes when the broker
		// is back.
		c.owed.Store(true)
		c.m.Skipped()
	} else if entries := c.entries(ds); len(entries) > 0 {
		c.published(c.publish(ctx, entries))
	}
	c.hub.Route(ctx, ds)
}

// entries splits ds by the shards of their recipients: one entry per
// shard, holding that shard's part of every delivery. It runs for every
// commit batch, so it groups with slices indexed by shard, not maps.
func (c *Cluster) entries(ds []hub.Delivery) []storage.Entry {
	perShard := make([][]encodedDelivery, c.layout.Shards)
	// byShard is one delivery's recipients per shard, emptied after each.
	byShard := make([][]string, c.layout.Shards)
	for _, d := range ds {
		frame, err := proto.Marshal(d.Frame)
		if err != nil {
			c.log.Error("route: marshal frame", slog.Any("err", err))
			continue
		}
		var ack []byte
		ackShard := -1
		if d.Ack != nil {
			if ack, err = proto.Marshal(d.Ack); err != nil {
				c.log.Error("route: marshal ack", slog.Any("err", err))
				continue
			}
			ackShard = c.layout.Of(d.AckUser)
		}
		for _, u := range d.Users {
			s := c.layout.Of(u)
			byShard[s] = append(byShard[s], u)
		}
		for s, users := range byShard {
			if users == nil && s != ackShard {
				continue
			}
			ed := encodedDelivery{frame: frame, users: users}
			if s == ackShard {
				ed.ack, ed.ackUser, ed.ackDevice = ack, d.AckUser, d.AckDevice
			}
			perShard[s] = append(perShard[s], ed)
			byShard[s] = nil
		}
	}
	var entries []storage.Entry
	for s, eds := range perShard {
		if len(eds) > 0 {
			entries = append(entries, storage.Entry{Shard: s, Payload: encodeEntry(c.cfg.Node, false, eds)})
		}
	}
	return entries
}

// publish publishes entries within PublishTimeout and records how it went.
func (c *Cluster) publish(ctx context.Context, entries []storage.Entry) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.PublishTimeout)
	defer cancel()
	start := time.Now()
	err := c.broker.PublishBatch(ctx, entries)
	c.m.Published(len(entries), time.Since(start), err != nil)
	return err
}

// published records the outcome of a publish.
func (c *Cluster) published(err error) {
	if err == nil {
		return
	}
	c.owed.Store(true)
	if c.failing.CompareAndSwap(false, true) {
		c.log.Warn("route: publish failed; devices on other processes get these messages when they recheck or reconnect", slog.Any("err", err))
	}
}

// payDebts publishes a recheck entry to every shard whenever a publish
// failed, retrying until the broker takes it.
func (c *Cluster) payDebts(ctx context.Context) {
	t := time.NewTicker(c.cfg.RecheckRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.owed.Swap(false) {
			continue
		}
		if err := c.publishEverywhere(ctx, encodeControl(c.cfg.Node, true, "")); err != nil {
			c.owed.Store(true)
			continue
		}
		c.failing.Store(false)
		c.log.Info("route: publishing again; asked every process to recheck its devices")
	}
}

// publishEverywhere publishes payload to every shard's stream.
func (c *Cluster) publishEverywhere(ctx context.Context, payload []byte) error {
	entries := make([]storage.Entry, c.layout.Shards)
	for s := range entries {
		entries[s] = storage.Entry{Shard: s, Payload: payload}
	}
	return c.publish(ctx, entries)
}

// CloseDevice ends a revoked device's stream on whichever process holds
// it. The caller knows only the device, so every shard is told. If the
// broker cannot be reached, a stream elsewhere lives on until its access
// token is refused on reconnect.
func (c *Cluster) CloseDevice(ctx context.Context, deviceID string) {
	c.hub.CloseDeviceAnyUser(deviceID, hub.ErrRevoked)
	if err := c.publishEverywhere(ctx, encodeControl(c.cfg.Node, false, deviceID)); err != nil {
		c.log.Warn("route: tell other processes to close a revoked device", slog.String("device_id", deviceID), slog.Any("err", err))
	}
}

// handle delivers one entry of the shard's stream to the devices here.
func (c *Cluster) handle(_ context.Context, payload []byte) {
	if payload == nil {
		// The broker may have lost entries (it restarted without them):
		// every device here compares itself with the store.
		c.m.Consumed(metrics.EntryLost)
		c.hub.Each((*hub.Conn).Recheck)
		return
	}
	e, err := decodeEntry(payload)
	if err != nil {
		c.m.Consumed(metrics.EntryInvalid)
		c.log.Error("route: drop undecodable entry", slog.Any("err", err))
		return
	}
	if e.origin == c.cfg.Node {
		c.m.Consumed(metrics.EntryOwn)
		return // delivered here when it was published
	}
	switch {
	case e.recheck:
		c.m.Consumed(metrics.EntryRecheck)
		c.hub.Each((*hub.Conn).Recheck)
	case e.closeDevice != "":
		c.m.Consumed(metrics.EntryCloseDevice)
	default:
		c.m.Consumed(metrics.EntryDeliveries)
	}
	if e.closeDevice != "" {
		c.hub.CloseDeviceAnyUser(e.closeDevice, hub.ErrRevoked)
	}
	for _, d := range e.deliveries {
		c.hub.Deliver(d)
	}
}
