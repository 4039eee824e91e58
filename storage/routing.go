package storage

import (
	"context"
	"time"
)

// Broker carries opaque payloads to every process of a shard: in a cluster,
// a committed message is published once per destination shard, and every
// process of that shard reads the shard's entries and delivers them to the
// devices connected to it.
//
// A Broker is never the source of truth. Messages are committed to the Store
// before they are published; an entry that is lost (the broker was down, a
// reader fell further behind than the broker retains) costs live delivery
// only, and devices catch up from their cursors when they reconnect.
//
// Delivery is at-least-once per group: a process that crashes, or loses its
// connection between handling an entry and acknowledging it, sees the entry
// again. Handlers must tolerate duplicates (clients de-duplicate by
// conversation and seq).
//
// Implementations are safe for concurrent use. Close is idempotent; after
// Close, Publish, PublishBatch and Join return ErrUnavailable and running
// Consume calls return nil.
type Broker interface {
	// Publish appends payload to shard's stream and returns once the broker
	// has it. Entries of one shard published by one goroutine are read in
	// the order they were published; there is no order between publishers.
	// It returns ErrUnavailable (wrapped) when the broker cannot be reached;
	// the caller logs and moves on. Publish never retries for long: a slow
	// or absent broker must not stall the commit path. The payload is not
	// retained after Publish returns.
	Publish(ctx context.Context, shard int, payload []byte) error

	// PublishBatch appends every entry to its shard's stream, in one round
	// trip where the broker allows it, and returns once the broker has them
	// all. It is Publish for many entries: the entries of one shard are read
	// in slice order, after anything the same goroutine published before
	// and before anything it publishes after; there is no order between
	// shards or between publishers. Delivery is at-least-once as for
	// Publish (a retried batch may append some entries twice).
	//
	// A batch is not atomic. An error means some entries may not have been
	// appended while others were; the caller treats the whole batch as
	// possibly lost (and its devices catch up from cursors). It returns
	// ErrUnavailable (wrapped) when the broker cannot be reached, and ctx's
	// error when ctx ends first. Like Publish it never retries for long, and
	// neither entries nor payloads are retained after it returns. An empty
	// (or nil) batch does nothing and returns nil, except after Close.
	PublishBatch(ctx context.Context, entries []Entry) error

	// Join makes group a reader of shard's stream: every entry published
	// after Join returns is delivered by Consume(shard, group), even when
	// Consume starts later. A new group starts at the newest entry; joining
	// an existing group changes nothing. A process joins before it accepts
	// devices, so that nothing committed after a device's catch-up is
	// missed. Returns ErrUnavailable when the broker cannot be reached.
	Join(ctx context.Context, shard int, group string) error

	// Consume delivers shard's entries to handle, one at a time, in stream
	// order, as group (one group per process, so every process of the shard
	// sees every entry; at most one Consume per shard and group at a time).
	// It joins the group first when needed (see Join). A restarted process
	// with the same group first re-reads the entries it had been given but
	// not acknowledged, then continues after its last acknowledged entry.
	//
	// An entry is acknowledged after handle returns; handle gets a ctx that
	// ends when Consume's ctx ends or the broker closes, and must return
	// promptly once it does (Close waits for it). Handle must not block on
	// slow devices: it enqueues and returns. A payload is valid only during
	// its handle call.
	//
	// Transient broker errors (connection refused, a restarting broker) are
	// retried with capped backoff inside Consume, so it survives a broker
	// restart; entries published while the broker was unreachable were
	// refused by Publish. If the broker lost the group (restarted without
	// persistence), Consume recreates it after the last entry it saw and
	// then calls handle with a nil payload: entries published before the
	// loss and not yet read may be gone, and the caller recovers them from
	// the source of truth.
	// Consume returns nil when ctx ends or the broker is closed, and an
	// error only when the broker refuses the stream in a way retrying cannot
	// fix (a wrong key type, missing permissions).
	Consume(ctx context.Context, shard int, group string, handle func(ctx context.Context, payload []byte)) error

	// Close stops running Consume calls, waits for them to return and
	// releases the connections. It is idempotent.
	Close() error
}

// Entry is one payload for one shard's stream, an element of a
// Broker.PublishBatch.
type Entry struct {
	Shard   int
	Payload []byte
}

// PresenceStore records which devices are online and on which server
// process (node). Entries expire by themselves: a process refreshes its
// devices with SetOnline on a heartbeat shorter than ttl, so the devices of
// a process that crashed go offline within ttl.
//
// Implementations are safe for concurrent use. Presence is advisory:
// errors are wrapped ErrUnavailable when the backend cannot be reached, and
// callers degrade (treat users as offline) rather than fail a request.
// Expiry is judged by the backend's clock, never by the callers', so clock
// skew between processes does not matter.
type PresenceStore interface {
	// SetOnline records device deviceID of userID as online on node until
	// ttl from now, replacing any earlier record of that device (a device
	// that reconnects elsewhere moves). ttl must be positive; it is rounded
	// up to a millisecond.
	SetOnline(ctx context.Context, userID, deviceID, node string, ttl time.Duration) error

	// SetOffline removes the record of the device if it is still on node,
	// and does nothing otherwise (it expired, or the device reconnected on
	// another node after this node's session ended: a late disconnect must
	// not hide the newer session). It is not an error if no record exists.
	SetOffline(ctx context.Context, userID, deviceID, node string) error

	// Online reports which of userIDs have at least one online device. The
	// map has an entry for every distinct id in userIDs. Implementations
	// answer in one round trip however many users are asked about.
	Online(ctx context.Context, userIDs []string) (map[string]bool, error)
}
