// Package analytics holds what the analytics backends share: the events
// the server records (no message content), the shapes of the query
// results, and the Reader interface every backend answers through
// (storage/clickhouse in a cluster, storage/embedded on a single node).
//
// The queries' semantics, which every Reader keeps and
// storage/analytics/analyticstest checks: each reads the events in the
// half-open range [from, to), with event times in whole seconds (an event
// at 12:00:00.7 counts as 12:00:00, so it is in a range that starts at
// 12:00:00 and in none that starts at 12:00:00.5); buckets start on UTC
// boundaries; only buckets with events are returned, oldest first; an
// event written twice with the same ID counts once.
package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// EventKind is what an event records. The values are stored (ClickHouse's
// Enum8, SQLite's INTEGER): never renumber them.
type EventKind int8

// The kinds of events.
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

// String is the kind's name ("message_sent").
func (k EventKind) String() string {
	if name, ok := eventKindNames[k]; ok {
		return name
	}
	return fmt.Sprintf("EventKind(%d)", int8(k))
}

// Valid reports whether k is one of the kinds above.
func (k EventKind) Valid() bool { return eventKindNames[k] != "" }

// Event is one analytics event. It holds no message content.
type Event struct {
	// ID identifies the event: writing an event again with the same ID,
	// Kind and At (a retried batch) leaves one event for the queries. The
	// zero ID means a writer's Record assigns a random one; a backend's
	// WriteEvents refuses it.
	ID uuid.UUID
	// Kind is what happened. Required.
	Kind EventKind
	// At is when it happened, stored in whole seconds (truncated), from
	// 1970 to 2106. The zero At means a writer's Record stamps the time of
	// the call; WriteEvents refuses it.
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

// maxEventTime is the latest At a backend stores: ClickHouse's DateTime
// (UInt32 seconds), which the embedded store keeps to as well so both
// accept the same events.
var maxEventTime = time.Unix(1<<32-1, 0)

// Validate reports an event no backend's WriteEvents takes: a zero ID, an
// unknown Kind, or At zero or outside 1970 to 2106.
func (e *Event) Validate() error {
	switch {
	case e.ID == uuid.Nil:
		return errors.New("zero id")
	case !e.Kind.Valid():
		return fmt.Errorf("unknown kind %d", int8(e.Kind))
	case e.At.IsZero():
		return errors.New("zero time")
	case e.At.Before(time.Unix(0, 0)) || e.At.After(maxEventTime):
		return fmt.Errorf("time %s outside DateTime's range (1970 to 2106)", e.At.UTC().Format(time.RFC3339))
	}
	return nil
}

// Bucket is the width of the time buckets a query groups by.
type Bucket int

// The bucket widths.
const (
	BucketMinute Bucket = iota + 1
	BucketHour
	BucketDay
)

// String is the bucket's name ("minute").
func (b Bucket) String() string {
	switch b {
	case BucketMinute:
		return "minute"
	case BucketHour:
		return "hour"
	case BucketDay:
		return "day"
	}
	return fmt.Sprintf("Bucket(%d)", int(b))
}

// Count is a number of events in the bucket that starts at Start (UTC).
type Count struct {
	Start time.Time
	Count uint64
}

// ActiveUsers is how many distinct users were active in the period that
// starts at Start (UTC): a day or a calendar month.
type ActiveUsers struct {
	Start time.Time
	Users uint64
}

// LatencyPercentiles summarise the latencies of one kind of event.
type LatencyPercentiles struct {
	// Kind is EventMessageDelivered (send→deliver) or EventMessageRead
	// (send→read).
	Kind EventKind
	// Count is how many events were measured.
	Count uint64
	// P50, P90 and P99 interpolate between neighbours: p of n sorted
	// values is at rank 1 + p·(n−1).
	P50, P90, P99 time.Duration
}

// ConversationVolume is how many messages were sent in a conversation.
type ConversationVolume struct {
	ConversationID string
	Messages       uint64
}

// Connections are the stream connections of one bucket.
type Connections struct {
	Start time.Time
	// Opened and Closed count the connections opened and closed in the
	// bucket.
	Opened, Closed uint64
	// Open is opened minus closed over all events before the bucket's
	// end (not only those in the range): the connections open at its end.
	Open int64
}

// Reader answers the analytics queries. Implementations are safe for
// concurrent use. Every method fails on a zero time or an empty range
// (from not before to); backend trouble wraps storage.ErrUnavailable.
type Reader interface {
	// MessageVolume counts the messages sent in [from, to), per bucket.
	MessageVolume(ctx context.Context, from, to time.Time, bucket Bucket) ([]Count, error)
	// DailyActiveUsers counts, per UTC day in [from, to), the distinct
	// users who sent a message or opened a connection.
	DailyActiveUsers(ctx context.Context, from, to time.Time) ([]ActiveUsers, error)
	// MonthlyActiveUsers counts, per UTC calendar month, the distinct
	// users who sent a message or opened a connection in [from, to) (a
	// month the range covers in part counts only that part).
	MonthlyActiveUsers(ctx context.Context, from, to time.Time) ([]ActiveUsers, error)
	// Latency returns the send→deliver and send→read percentiles of the
	// events in [from, to), one entry per kind that has events
	// (EventMessageDelivered first).
	Latency(ctx context.Context, from, to time.Time) ([]LatencyPercentiles, error)
	// BusiestConversations returns the n (positive) conversations with
	// the most messages sent in [from, to), most first, ties by
	// conversation ID.
	BusiestConversations(ctx context.Context, from, to time.Time, n int) ([]ConversationVolume, error)
	// ConnectionsOverTime counts the connections opened and closed per
	// bucket in [from, to), with the connections open at each bucket's
	// end.
	ConnectionsOverTime(ctx context.Context, from, to time.Time, bucket Bucket) ([]Connections, error)
}

// Writer stores events in one batch. Writing the same events again is
// safe: the queries see each ID once.
type Writer interface {
	WriteEvents(ctx context.Context, events []Event) error
}

// LatencyMillis is d in whole milliseconds, clamped to [0, 2^32-1].
func LatencyMillis(d time.Duration) uint32 {
	ms := d.Milliseconds()
	switch {
	case ms < 0:
		return 0
	case ms > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(ms)
}

// Millis is a latency in (fractional) milliseconds as a Duration, rounded
// to the microsecond.
func Millis(ms float64) time.Duration {
	return time.Duration(ms * float64(time.Millisecond)).Round(time.Microsecond)
}

// SecondsRange checks a query's [from, to) (neither zero, from before to)
// and turns it into whole seconds since 1970 that select the same
// whole-second event times: both rounded up (at >= 10.5 is at >= 11 and
// at < 10.5 is at < 11, for at in whole seconds).
func SecondsRange(from, to time.Time) (lo, hi int64, err error) {
	if from.IsZero() || to.IsZero() {
		return 0, 0, errors.New("zero time in range")
	}
	if !from.Before(to) {
		return 0, 0, fmt.Errorf("empty range [%s, %s)", from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano))
	}
	return ceilSeconds(from), ceilSeconds(to), nil
}

// ceilSeconds is t rounded up to a whole second.
func ceilSeconds(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

// Pruner drops old events, so that analytics (unlike the message archive,
// which is kept) does not grow without end.
type Pruner interface {
	// PruneEvents removes events older than cutoff, at the backend's
	// granularity: the embedded store removes exactly those; ClickHouse
	// drops whole monthly partitions, so it removes a month's events once
	// the month has entirely passed cutoff (keeping some events up to a
	// month longer). Repeating it is harmless.
	PruneEvents(ctx context.Context, cutoff time.Time) error
}

// ConnectionCounter finds the connections a server left open: a process
// that crashed recorded their opens but never their closes, so every
// count of open connections (ConnectionsOverTime) would include them for
// ever.
type ConnectionCounter interface {
	// OpenConnections returns how many connections node opened before
	// before minus how many it closed before then (0 when that is
	// negative, as after a prune).
	OpenConnections(ctx context.Context, node string, before time.Time) (int64, error)
}
