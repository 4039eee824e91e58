package redis

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-im/parley/storage"
)

// payloadField is the one field of every stream entry.
const payloadField = "p"

// Publish implements storage.Broker: one XADD with MAXLEN ~ StreamMaxLen.
// go-redis retries a failed connection a few times within the call, so a
// retried XADD can append an entry twice (at-least-once).
func (r *Redis) Publish(ctx context.Context, shard int, payload []byte) error {
	if r.isClosed() {
		return wrapErr("publish", goredis.ErrClosed)
	}
	err := r.client.XAdd(ctx, r.xaddArgs(shard, payload)).Err()
	return wrapErr(fmt.Sprintf("publish shard %d", shard), err)
}

// PublishBatch implements storage.Broker: one pipeline of XADDs, each with
// MAXLEN ~ StreamMaxLen, in slice order on one connection, so Redis
// appends the entries of a shard in that order. go-redis retries the whole
// pipeline on a broken connection, so entries that made it before the
// break can be appended twice (at-least-once).
func (r *Redis) PublishBatch(ctx context.Context, entries []storage.Entry) error {
	if r.isClosed() {
		return wrapErr("publish batch", goredis.ErrClosed)
	}
	if len(entries) == 0 {
		return nil
	}
	pipe := r.client.Pipeline()
	for _, e := range entries {
		pipe.XAdd(ctx, r.xaddArgs(e.Shard, e.Payload))
	}
	cmds, err := pipe.Exec(ctx)
	if err == nil {
		return nil
	}
	// Name the first entry that failed; on a broken connection every
	// command carries the same error.
	for i, c := range cmds {
		if cerr := c.Err(); cerr != nil {
			return wrapErr(fmt.Sprintf("publish batch of %d: entry %d, shard %d", len(entries), i, entries[i].Shard), cerr)
		}
	}
	return wrapErr(fmt.Sprintf("publish batch of %d", len(entries)), err)
}

// Join implements storage.Broker: XGROUP CREATE … $ MKSTREAM, where an
// existing group (BUSYGROUP) is success.
func (r *Redis) Join(ctx context.Context, shard int, group string) error {
	if r.isClosed() {
		return wrapErr("join", goredis.ErrClosed)
	}
	return wrapErr(fmt.Sprintf("join shard %d group %s", shard, group), r.createGroup(ctx, r.streamKey(shard), group, "$"))
}

// Consume implements storage.Broker. The group has one consumer, named
// after the group.
func (r *Redis) Consume(ctx context.Context, shard int, group string, handle func(ctx context.Context, payload []byte)) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.consumers.Add(1)
	r.mu.Unlock()
	defer r.consumers.Done()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Close ends every Consume: tie ctx to r.done. The goroutine ends with
	// ctx, which the deferred cancel ends at the latest.
	go func() {
		select {
		case <-r.done:
			cancel()
		case <-ctx.Done():
		}
	}()

	c := &consumer{
		r:      r,
		key:    r.streamKey(shard),
		group:  group,
		handle: handle,
		log:    r.log.With(slog.Int("shard", shard), slog.String("group", group)),
		join:   true,
	}
	return c.run(ctx)
}

// consumer is the state of one Consume call; only its goroutine touches it.
type consumer struct {
	r      *Redis
	key    string
	group  string
	handle func(ctx context.Context, payload []byte)
	log    *slog.Logger

	// join says the group must be created (or confirmed) before reading.
	join bool
	// lost says the group was lost with whatever it had not delivered:
	// handle hears of it (a nil payload) once the group is back.
	lost bool
	// lastID is the newest entry id this consumer has seen or the group
	// had reached when it joined; "" until known. When Redis loses the
	// group, it is recreated here, so entries published since the loss
	// are still delivered.
	lastID string
}

// run reads until ctx ends, retrying transient failures with backoff.
func (c *consumer) run(ctx context.Context) error {
	failures := 0
	for {
		err := c.session(ctx, &failures)
		if ctx.Err() != nil {
			// Ended by the caller or Close: err is a consequence.
			return nil //nolint:nilerr // Consume returns nil when ctx ends
		}
		switch {
		case isNoGroup(err):
			// Redis restarted without persistence, or someone deleted
			// the group: recreate it after the last entry seen.
			c.log.WarnContext(ctx, "redis: consumer group lost, recreating it", slog.String("after_id", c.lastID))
			c.join = true
			c.lost = true
		case isTransient(err):
			if failures == 0 {
				c.log.WarnContext(ctx, "redis: consume failing, retrying", slog.Any("err", err))
			}
		default:
			return wrapErr("consume "+c.key+" group "+c.group, err)
		}
		failures++
		if !c.sleep(ctx, failures) {
			return nil
		}
	}
}

// session joins if needed, delivers the group's pending entries, then new
// ones, until an error. Every session starts with the pending entries, so
// entries Redis handed out on a connection that then broke are not lost.
func (c *consumer) session(ctx context.Context, failures *int) error {
	if c.join {
		if err := c.joinGroup(ctx); err != nil {
			return err
		}
		c.join = false
		if c.lost {
			// Entries published before the loss and not yet read are
			// gone; the caller must recover from its source of truth.
			c.lost = false
			c.handle(ctx, nil)
		}
	}
	// Pending entries: ids after "0" that were delivered to this consumer
	// and not acknowledged. Redis returns them without blocking.
	for id := "0"; ; {
		msgs, err := c.read(ctx, id, -1)
		if err != nil {
			return err
		}
		c.recovered(ctx, failures)
		if len(msgs) == 0 {
			break
		}
		if err := c.deliver(ctx, msgs); err != nil {
			return err
		}
		id = msgs[len(msgs)-1].ID
	}
	for ctx.Err() == nil {
		msgs, err := c.read(ctx, ">", c.r.cfg.BlockTimeout)
		if err != nil {
			return err
		}
		c.recovered(ctx, failures)
		if err := c.deliver(ctx, msgs); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// joinGroup creates the group at the newest entry, or after lastID when
// recreating it, and learns where an existing group stands.
func (c *consumer) joinGroup(ctx context.Context) error {
	start := "$"
	if c.lastID != "" {
		start = c.lastID
	}
	if err := c.r.createGroup(ctx, c.key, c.group, start); err != nil {
		return err
	}
	if c.lastID != "" {
		return nil
	}
	groups, err := c.r.client.XInfoGroups(ctx, c.key).Result()
	if err != nil {
		return err
	}
	for _, g := range groups {
		if g.Name == c.group {
			c.lastID = g.LastDeliveredID
		}
	}
	return nil
}

// read is one XREADGROUP of up to ReadCount entries after id (">" for new
// entries). block < 0 does not block. A timeout is no entries.
func (c *consumer) read(ctx context.Context, id string, block time.Duration) ([]goredis.XMessage, error) {
	streams, err := c.r.client.XReadGroup(ctx, &goredis.XReadGroupArgs{
		Group:    c.group,
		Consumer: c.group,
		Streams:  []string{c.key, id},
		Count:    c.r.cfg.ReadCount,
		Block:    block,
	}).Result()
	if err == goredis.Nil { //nolint:errorlint // go-redis returns Nil unwrapped
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(streams) == 0 {
		return nil, nil
	}
	return streams[0].Messages, nil
}

// deliver hands msgs to handle in order and acknowledges those handled in
// one XACK. It stops early when ctx ends; the entries it did not hand out
// stay pending and come first on the group's next Consume. Entries that
// were trimmed while pending come back without fields: they are
// acknowledged and skipped.
func (c *consumer) deliver(ctx context.Context, msgs []goredis.XMessage) error {
	ids := make([]string, 0, len(msgs))
	for _, m := range msgs {
		if ctx.Err() != nil {
			break
		}
		if p, ok := m.Values[payloadField].(string); ok {
			c.handle(ctx, []byte(p))
		}
		ids = append(ids, m.ID)
		if c.lastID == "" || idLess(c.lastID, m.ID) {
			c.lastID = m.ID
		}
	}
	if len(ids) == 0 {
		return nil
	}
	// Acknowledge what was handled even when ctx just ended, so a
	// restarted process does not see it again; bounded so Close is not
	// held up by an unreachable Redis.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.r.cfg.BlockTimeout)
	defer cancel()
	return c.r.client.XAck(actx, c.key, c.group, ids...).Err()
}

// recovered notes a successful round trip after failures.
func (c *consumer) recovered(ctx context.Context, failures *int) {
	if *failures > 0 {
		c.log.InfoContext(ctx, "redis: consume recovered", slog.Int("failures", *failures))
		*failures = 0
	}
}

// sleep waits before retry number failures: MinBackoff doubling up to
// MaxBackoff, with jitter so a fleet of processes does not retry in step.
// It reports false if ctx ended first.
func (c *consumer) sleep(ctx context.Context, failures int) bool {
	d := c.r.cfg.MinBackoff
	for i := 1; i < failures && d < c.r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, c.r.cfg.MaxBackoff)
	if d > 0 {
		d = d/2 + rand.N(d/2+1)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// xaddArgs is the XADD of payload to shard's stream, trimmed to about
// StreamMaxLen entries.
func (r *Redis) xaddArgs(shard int, payload []byte) *goredis.XAddArgs {
	return &goredis.XAddArgs{
		Stream: r.streamKey(shard),
		MaxLen: r.cfg.StreamMaxLen,
		Approx: true,
		Values: []any{payloadField, payload},
	}
}

// createGroup is XGROUP CREATE key group start MKSTREAM; an existing group
// is success.
func (r *Redis) createGroup(ctx context.Context, key, group, start string) error {
	err := r.client.XGroupCreateMkStream(ctx, key, group, start).Err()
	if goredis.HasErrorPrefix(err, "BUSYGROUP") {
		return nil
	}
	return err
}

// idLess compares stream ids "ms-seq" numerically.
func idLess(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	if am != bm {
		return am < bm
	}
	return as < bs
}

func splitID(id string) (ms, seq uint64) {
	m, s, _ := strings.Cut(id, "-")
	ms, _ = strconv.ParseUint(m, 10, 64)
	seq, _ = strconv.ParseUint(s, 10, 64)
	return ms, seq
}
