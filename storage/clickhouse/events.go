package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-im/parley/storage/analytics"
)

// eventColumns are the columns WriteEvents fills, in Append order, named
// in the INSERT (without names, clickhouse-go inserts nothing and reports
// no error).
const eventColumns = `event_id, kind, at, user_id, device_id, conversation_id, seq, latency_ms, node`

// The event types are storage/analytics's, which the embedded store
// shares; the aliases keep this package's API as it was.
type (
	// EventKind is what an analytics event records. Its values are those
	// of the events table's Enum8.
	EventKind = analytics.EventKind
	// Event is one analytics event. It holds no message content.
	Event = analytics.Event
)

// The kinds of analytics events.
const (
	EventMessageSent      = analytics.EventMessageSent
	EventMessageDelivered = analytics.EventMessageDelivered
	EventMessageRead      = analytics.EventMessageRead
	EventConnectionOpened = analytics.EventConnectionOpened
	EventConnectionClosed = analytics.EventConnectionClosed
)

// WriteEvents inserts events in one batch (one INSERT, one part). On an
// error some of them may have been written; writing the same events
// again is safe (the queries see each ID once). Input errors (a zero ID,
// an unknown Kind, At zero or out of DateTime's range) are reported
// before anything is sent. Server trouble wraps storage.ErrUnavailable.
// An empty events does nothing. Most callers want an EventWriter, which
// batches, retries and bounds memory.
func (db *DB) WriteEvents(ctx context.Context, events []Event) error {
	if db.closed.Load() {
		return errClosed("write events")
	}
	if len(events) == 0 {
		return nil
	}
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return fmt.Errorf("clickhouse: write events: event %d: %w", i, err)
		}
	}
	cctx, cancel := db.call(ctx)
	defer cancel()
	batch, err := db.conn.PrepareBatch(cctx, "INSERT INTO events ("+eventColumns+")")
	if err != nil {
		return wrapErr(ctx, "write events: prepare", err)
	}
	// Abort after Send is a no-op; it releases the connection otherwise.
	defer func() { _ = batch.Abort() }()
	for i := range events {
		e := &events[i]
		if err := batch.Append(
			e.ID, int8(e.Kind), e.At.Truncate(time.Second), e.UserID, e.DeviceID,
			e.ConversationID, e.Seq, analytics.LatencyMillis(e.Latency), e.Node,
		); err != nil {
			return fmt.Errorf("clickhouse: write events: event %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return wrapErr(ctx, fmt.Sprintf("write events: send %d rows", len(events)), err)
	}
	return nil
}
