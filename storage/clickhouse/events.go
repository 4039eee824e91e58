package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// eventColumns are the columns WriteEvents fills, in Append order, named
// in the INSERT (without names, clickhouse-go inserts nothing and reports
// no error).
const eventColumns = `event_id, kind, at, user_id, device_id, conversation_id, seq, latency_ms, node`

// EventKind is what an analytics event records. Its values are those of
// the events table's Enum8.
type EventKind int8

// The kinds of analytics events.
const (
	// EventMessageSent: a message was committed. UserID and DeviceID are
	// the sender's; ConversationID and Seq the message's.
	EventMessageSent EventKind = 1
	// EventMessageDelivered: a message reached a recipient's device.
	// UserID and DeviceID are the recipient's; Latency is send→deliver.
	EventMessageDelivered EventKind = 2
	// EventMessageRead: a recipient marked a message read. Latency is
	// send→read.
	EventMessageRead EventKind = 3
	// EventConnectionOpened: a device opened a stream.
	EventConnectionOpened EventKind = 4
	// EventConnectionClosed: a device's stream ended.
	EventConnectionClosed EventKind = 5
)

var eventKindNames = map[EventKind]string{
	EventMessageSent:      "message_sent",
	EventMessageDelivered: "message_delivered",
	EventMessageRead:      "message_read",
	EventConnectionOpened: "connection_opened",
	EventConnectionClosed: "connection_closed",
}

// String is the kind's name in the events table ("message_sent").
func (k EventKind) String() string {
	if name, ok := eventKindNames[k]; ok {
		return name
	}
	return fmt.Sprintf("EventKind(%d)", int8(k))
}

// Event is one analytics event. It holds no message content.
type Event struct {
	// ID identifies the event: writing an event again with the same ID,
	// Kind and At (a retried batch) leaves one event for the queries. The
	// zero ID means EventWriter.Record assigns a random one; WriteEvents
	// refuses it.
	ID uuid.UUID
	// Kind is what happened. Required.
	Kind EventKind
	// At is when it happened, stored in whole seconds (truncated), from
	// 1970 to 2106. The zero At means EventWriter.Record stamps the time
	// of the call; WriteEvents refuses it.
	At             time.Time
	UserID         string
	DeviceID       string
	ConversationID string
	// Seq is the message's position in its conversation; 0 for
	// connection events.
	Seq uint64
	// Latency is send→deliver (EventMessageDelivered) or send→read
	// (EventMessageRead) as the server measured it; stored in whole
	// milliseconds, capped at about 49 days (UInt32); negative counts as 0.
	Latency time.Duration
	// Node names the server that recorded the event.
	Node string
}

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
		if err := validateEvent(&events[i]); err != nil {
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
			e.ConversationID, e.Seq, latencyMillis(e.Latency), e.Node,
		); err != nil {
			return fmt.Errorf("clickhouse: write events: event %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return wrapErr(ctx, fmt.Sprintf("write events: send %d rows", len(events)), err)
	}
	return nil
}

// validateEvent reports an event the table cannot hold.
func validateEvent(e *Event) error {
	switch {
	case e.ID == uuid.Nil:
		return errors.New("zero id")
	case eventKindNames[e.Kind] == "":
		return fmt.Errorf("unknown kind %d", int8(e.Kind))
	case e.At.IsZero():
		return errors.New("zero time")
	case e.At.Before(minTime) || e.At.After(maxTime):
		return fmt.Errorf("time %s outside DateTime's range (1970 to 2106)", e.At.UTC().Format(time.RFC3339))
	}
	return nil
}

// latencyMillis is d in whole milliseconds, clamped to UInt32.
func latencyMillis(d time.Duration) uint32 {
	ms := d.Milliseconds()
	switch {
	case ms < 0:
		return 0
	case ms > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(ms)
}
