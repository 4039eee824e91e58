// Package analyticstest is the conformance suite of the analytics
// backends: known-answer cases every analytics.Reader passes, the same on
// ClickHouse and on the embedded store. Each case writes every event
// twice, as a retried batch would, and expects it counted once.
package analyticstest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/analytics"
)

// Backend is what the suite tests: a store that takes events and answers
// the queries.
type Backend interface {
	analytics.Reader
	analytics.Writer
	analytics.Pruner
	analytics.ConnectionCounter
}

// day0 is midnight UTC of the day the cases start on.
var day0 = time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)

// Run runs every case, each on a fresh, empty backend from newBackend
// (which closes it in t.Cleanup).
func Run(t *testing.T, newBackend func(t *testing.T) Backend) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, Backend)
	}{
		{"message_volume", testMessageVolume},
		{"active_users", testActiveUsers},
		{"latency", testLatency},
		{"busiest_conversations", testBusiestConversations},
		{"connections_over_time", testConnectionsOverTime},
		{"rejects_bad_events", testRejectsBadEvents},
		{"empty", testEmpty},
		{"prune", testPrune},
		{"open_connections_per_node", testOpenConnections},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newBackend(t))
		})
	}
}

// ev is an event of kind at t by user in conversation conv, with a
// fresh ID.
func ev(kind analytics.EventKind, t time.Time, user, conv string) analytics.Event {
	return analytics.Event{ID: uuid.New(), Kind: kind, At: t, UserID: user, DeviceID: "d-" + user, ConversationID: conv, Node: "n1"}
}

// writeTwice writes events twice, as a retry of a batch that had landed
// would.
func writeTwice(t *testing.T, b Backend, events []analytics.Event) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, b.WriteEvents(ctx, events))
	require.NoError(t, b.WriteEvents(ctx, events))
}

func testMessageVolume(t *testing.T, b Backend) {
	ctx := context.Background()
	sent := func(t time.Time) analytics.Event { return ev(analytics.EventMessageSent, t, "alice", "c1") }
	sec := func(s float64) time.Time { return day0.Add(time.Duration(s * float64(time.Second))) }
	writeTwice(t, b, []analytics.Event{
		sent(sec(-1)), // before the range
		sent(sec(0)), sent(sec(59)), sent(sec(60)), sent(sec(120.9)), sent(sec(3599)),
		sent(sec(3600)), sent(sec(86399)), sent(sec(86400)),
		sent(sec(2 * 86400)), // at the range's end: excluded
		ev(analytics.EventMessageDelivered, sec(10), "bob", "c1"),
		ev(analytics.EventConnectionOpened, sec(10), "bob", ""),
	})
	at := func(d time.Duration, n uint64) analytics.Count {
		return analytics.Count{Start: day0.Add(d), Count: n}
	}
	for _, tc := range []struct {
		name     string
		from, to time.Time
		bucket   analytics.Bucket
		want     []analytics.Count
	}{
		{name: "minute", from: day0, to: day0.Add(48 * time.Hour), bucket: analytics.BucketMinute, want: []analytics.Count{
			at(0, 2), at(time.Minute, 1), at(2*time.Minute, 1), at(59*time.Minute, 1),
			at(time.Hour, 1), at(23*time.Hour+59*time.Minute, 1), at(24*time.Hour, 1),
		}},
		{name: "hour", from: day0, to: day0.Add(48 * time.Hour), bucket: analytics.BucketHour, want: []analytics.Count{
			at(0, 5), at(time.Hour, 1), at(23*time.Hour, 1), at(24*time.Hour, 1),
		}},
		{name: "day", from: day0, to: day0.Add(48 * time.Hour), bucket: analytics.BucketDay, want: []analytics.Count{
			at(0, 7), at(24*time.Hour, 1),
		}},
		{name: "end_is_exclusive", from: day0, to: sec(60), bucket: analytics.BucketDay, want: []analytics.Count{at(0, 2)}},
		{name: "end_includes_last_second", from: day0, to: sec(60.5), bucket: analytics.BucketDay, want: []analytics.Count{at(0, 3)}},
		{name: "subsecond_from_skips_its_second", from: sec(0.5), to: sec(60), bucket: analytics.BucketMinute, want: []analytics.Count{at(0, 1)}},
		{name: "whole_range_with_the_end_event", from: sec(-1), to: sec(2*86400 + 1), bucket: analytics.BucketDay, want: []analytics.Count{
			at(-24*time.Hour, 1), at(0, 7), at(24*time.Hour, 1), at(48*time.Hour, 1),
		}},
		{name: "empty", from: sec(5), to: sec(59), bucket: analytics.BucketHour, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := b.MessageVolume(ctx, tc.from, tc.to, tc.bucket)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("bad_input", func(t *testing.T) {
		t.Parallel()
		_, err := b.MessageVolume(ctx, day0, day0, analytics.BucketDay)
		require.ErrorContains(t, err, "empty range")
		_, err = b.MessageVolume(ctx, day0, day0.Add(time.Hour), analytics.Bucket(0))
		require.ErrorContains(t, err, "unknown bucket")
	})
}

func testActiveUsers(t *testing.T, b Backend) {
	ctx := context.Background()
	day := func(d int) time.Time { return day0.AddDate(0, 0, d) }
	april := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	writeTwice(t, b, []analytics.Event{
		ev(analytics.EventMessageSent, day(0), "alice", "c1"),
		ev(analytics.EventMessageSent, day(0).Add(time.Hour), "alice", "c1"),
		ev(analytics.EventConnectionOpened, day(0).Add(2*time.Hour), "bob", ""),
		ev(analytics.EventMessageRead, day(0).Add(3*time.Hour), "carol", "c1"),    // reading is not activity here
		ev(analytics.EventConnectionClosed, day(0).Add(3*time.Hour), "carol", ""), // nor closing
		ev(analytics.EventConnectionOpened, day(1), "alice", ""),
		ev(analytics.EventMessageSent, day(1).Add(time.Hour), "dave", "c2"),
		ev(analytics.EventMessageSent, april.Add(-time.Second), "frank", "c2"),
		ev(analytics.EventMessageSent, april, "erin", "c2"),
		ev(analytics.EventMessageSent, april.AddDate(0, 0, 1), "gina", "c2"), // at the range's end
	})
	from, to := day0, april.AddDate(0, 0, 1)

	daily, err := b.DailyActiveUsers(ctx, from, to)
	require.NoError(t, err)
	require.Equal(t, []analytics.ActiveUsers{
		{Start: day(0), Users: 2},
		{Start: day(1), Users: 2},
		{Start: april.AddDate(0, 0, -1), Users: 1},
		{Start: april, Users: 1},
	}, daily)

	monthly, err := b.MonthlyActiveUsers(ctx, from, to)
	require.NoError(t, err)
	require.Equal(t, []analytics.ActiveUsers{
		{Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Users: 4}, // alice, bob, dave, frank
		{Start: april, Users: 1},
	}, monthly)
}

func testLatency(t *testing.T, b Backend) {
	ctx := context.Background()
	var events []analytics.Event
	// Written in descending order, so a backend that forgets to sort
	// fails.
	for i := 100; i >= 1; i-- {
		e := ev(analytics.EventMessageDelivered, day0.Add(time.Duration(i)*time.Second), "bob", "c1")
		e.Seq, e.Latency = uint64(i), time.Duration(i)*time.Millisecond+400*time.Microsecond // stored as i ms
		events = append(events, e)
	}
	for i := 1; i <= 10; i++ {
		e := ev(analytics.EventMessageRead, day0.Add(time.Duration(i)*time.Second), "bob", "c1")
		e.Seq, e.Latency = uint64(i), time.Second
		events = append(events, e)
	}
	late := ev(analytics.EventMessageRead, day0.Add(time.Hour), "bob", "c1") // at the range's end
	late.Latency = time.Hour
	sent := ev(analytics.EventMessageSent, day0, "alice", "c1")
	writeTwice(t, b, append(events, late, sent))

	got, err := b.Latency(ctx, day0, day0.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, got, 2)
	// Percentiles interpolate between neighbours: p of 1..100 is
	// 1 + p*99.
	require.Equal(t, analytics.EventMessageDelivered, got[0].Kind)
	require.EqualValues(t, 100, got[0].Count)
	require.InDelta(t, 50.5, got[0].P50.Seconds()*1000, 0.001)
	require.InDelta(t, 90.1, got[0].P90.Seconds()*1000, 0.001)
	require.InDelta(t, 99.01, got[0].P99.Seconds()*1000, 0.001)
	require.Equal(t, analytics.LatencyPercentiles{
		Kind: analytics.EventMessageRead, Count: 10, P50: time.Second, P90: time.Second, P99: time.Second,
	}, got[1])

	// One value: every percentile is it.
	got, err = b.Latency(ctx, day0.Add(7*time.Second), day0.Add(8*time.Second))
	require.NoError(t, err)
	require.Equal(t, []analytics.LatencyPercentiles{
		{Kind: analytics.EventMessageDelivered, Count: 1, P50: 7 * time.Millisecond, P90: 7 * time.Millisecond, P99: 7 * time.Millisecond},
		{Kind: analytics.EventMessageRead, Count: 1, P50: time.Second, P90: time.Second, P99: time.Second},
	}, got)
}

func testBusiestConversations(t *testing.T, b Backend) {
	ctx := context.Background()
	var events []analytics.Event
	add := func(conv string, n int, at time.Time) {
		for i := range n {
			e := ev(analytics.EventMessageSent, at.Add(time.Duration(i)*time.Second), "alice", conv)
			e.Seq = uint64(i + 1)
			events = append(events, e)
		}
	}
	to := day0.Add(time.Hour)
	add("c1", 5, day0)
	add("c3", 3, day0)
	add("c2", 3, day0)
	add("c4", 1, day0)
	add("c5", 10, to) // at and after the range's end
	events = append(events, ev(analytics.EventMessageRead, day0, "bob", "c4"), ev(analytics.EventMessageRead, day0, "bob", "c4"))
	writeTwice(t, b, events)

	got, err := b.BusiestConversations(ctx, day0, to, 3)
	require.NoError(t, err)
	require.Equal(t, []analytics.ConversationVolume{
		{ConversationID: "c1", Messages: 5},
		{ConversationID: "c2", Messages: 3}, // ties in conversation order
		{ConversationID: "c3", Messages: 3},
	}, got)

	got, err = b.BusiestConversations(ctx, day0, to, 10)
	require.NoError(t, err)
	require.Len(t, got, 4)

	_, err = b.BusiestConversations(ctx, day0, to, 0)
	require.ErrorContains(t, err, "not positive")
}

func testConnectionsOverTime(t *testing.T, b Backend) {
	ctx := context.Background()
	opened := func(at time.Time) analytics.Event { return ev(analytics.EventConnectionOpened, at, "alice", "") }
	closed := func(at time.Time) analytics.Event { return ev(analytics.EventConnectionClosed, at, "alice", "") }
	h := func(x float64) time.Time { return day0.Add(time.Duration(x * float64(time.Hour))) }
	writeTwice(t, b, []analytics.Event{
		// Before the range: 3 opened, 1 closed.
		opened(h(-5)), opened(h(-4)), opened(h(-1)), closed(h(-0.5)),
		opened(h(0)), opened(h(0.5)), closed(h(0.99)),
		closed(h(1)), closed(h(1.5)),
		opened(h(3.25)),
		opened(h(4)), // at the range's end
		ev(analytics.EventMessageSent, h(2), "alice", "c1"),
	})
	got, err := b.ConnectionsOverTime(ctx, day0, h(4), analytics.BucketHour)
	require.NoError(t, err)
	require.Equal(t, []analytics.Connections{
		{Start: h(0), Opened: 2, Closed: 1, Open: 3},
		{Start: h(1), Opened: 0, Closed: 2, Open: 1},
		{Start: h(3), Opened: 1, Closed: 0, Open: 2},
	}, got)

	got, err = b.ConnectionsOverTime(ctx, h(-6), h(-2), analytics.BucketDay)
	require.NoError(t, err)
	require.Equal(t, []analytics.Connections{{Start: h(-24), Opened: 2, Open: 2}}, got)

	// Nothing before the range: the running total starts at zero.
	got, err = b.ConnectionsOverTime(ctx, h(-100), h(-4.5), analytics.BucketMinute)
	require.NoError(t, err)
	require.Equal(t, []analytics.Connections{{Start: h(-5), Opened: 1, Open: 1}}, got)
}

func testRejectsBadEvents(t *testing.T, b Backend) {
	ctx := context.Background()
	good := ev(analytics.EventMessageSent, day0, "alice", "c1")
	for _, tc := range []struct {
		name  string
		edit  func(*analytics.Event)
		error string
	}{
		{name: "zero_id", edit: func(e *analytics.Event) { e.ID = uuid.Nil }, error: "zero id"},
		{name: "unknown_kind", edit: func(e *analytics.Event) { e.Kind = 9 }, error: "unknown kind"},
		{name: "zero_time", edit: func(e *analytics.Event) { e.At = time.Time{} }, error: "zero time"},
		{name: "before_1970", edit: func(e *analytics.Event) { e.At = time.Unix(-1, 0) }, error: "time 1969-12-31T23:59:59Z outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := good
			tc.edit(&e)
			err := b.WriteEvents(ctx, []analytics.Event{good, e})
			require.ErrorContains(t, err, "event 1: "+tc.error)
		})
	}
	// Nothing of a refused batch was written.
	got, err := b.MessageVolume(ctx, day0, day0.Add(time.Hour), analytics.BucketDay)
	require.NoError(t, err)
	require.Empty(t, got)
}

func testEmpty(t *testing.T, b Backend) {
	ctx := context.Background()
	from, to := day0, day0.AddDate(0, 1, 0)
	require.NoError(t, b.WriteEvents(ctx, nil))
	vol, err := b.MessageVolume(ctx, from, to, analytics.BucketDay)
	require.NoError(t, err)
	require.Empty(t, vol)
	dau, err := b.DailyActiveUsers(ctx, from, to)
	require.NoError(t, err)
	require.Empty(t, dau)
	lat, err := b.Latency(ctx, from, to)
	require.NoError(t, err)
	require.Empty(t, lat)
	busy, err := b.BusiestConversations(ctx, from, to, 10)
	require.NoError(t, err)
	require.Empty(t, busy)
	conns, err := b.ConnectionsOverTime(ctx, from, to, analytics.BucketHour)
	require.NoError(t, err)
	require.Empty(t, conns)
}

// testPrune: pruning at the start of a month removes the months before
// it, every kind, and keeps the rest (the granularity both backends
// share: ClickHouse drops whole months); pruning again changes nothing.
func testPrune(t *testing.T, b Backend) {
	ctx := context.Background()
	jan := time.Date(2026, 1, 20, 10, 0, 0, 0, time.UTC)
	feb := time.Date(2026, 2, 28, 23, 59, 59, 0, time.UTC)
	mar := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var events []analytics.Event
	for _, at := range []time.Time{jan, feb, mar, mar.Add(time.Hour)} {
		events = append(events, ev(analytics.EventMessageSent, at, "u1", "c1"), ev(analytics.EventConnectionOpened, at, "u1", ""))
	}
	require.NoError(t, b.WriteEvents(ctx, events))
	volume := func() []analytics.Count {
		t.Helper()
		got, err := b.MessageVolume(ctx, jan.AddDate(0, -1, 0), mar.AddDate(0, 1, 0), analytics.BucketDay)
		require.NoError(t, err)
		return got
	}
	require.Len(t, volume(), 3, "three days with messages")
	for range 2 {
		require.NoError(t, b.PruneEvents(ctx, mar))
		require.Equal(t, []analytics.Count{{Start: mar, Count: 2}}, volume())
		conns, err := b.ConnectionsOverTime(ctx, jan.AddDate(0, -1, 0), mar.AddDate(0, 1, 0), analytics.BucketDay)
		require.NoError(t, err)
		require.Len(t, conns, 1)
		require.Equal(t, uint64(2), conns[0].Opened, "the connection events of January and February are gone too")
	}
}

// testOpenConnections: a node's opens minus closes before a time, not
// another node's, not later ones, never below 0; written twice, once.
func testOpenConnections(t *testing.T, b Backend) {
	ctx := context.Background()
	at := func(sec int) time.Time { return day0.Add(time.Duration(sec) * time.Second) }
	on := func(kind analytics.EventKind, sec int, node string) analytics.Event {
		e := ev(kind, at(sec), "u1", "")
		e.Node = node
		return e
	}
	writeTwice(t, b, []analytics.Event{
		on(analytics.EventConnectionOpened, 1, "a"), on(analytics.EventConnectionOpened, 2, "a"), on(analytics.EventConnectionOpened, 3, "a"),
		on(analytics.EventConnectionClosed, 4, "a"),
		on(analytics.EventConnectionOpened, 10, "a"), // at the cutoff: not before it
		on(analytics.EventConnectionOpened, 5, "b"),
		on(analytics.EventConnectionClosed, 6, "c"), on(analytics.EventConnectionClosed, 7, "c"), // opens pruned
		on(analytics.EventMessageSent, 8, "a"),
	})
	for node, want := range map[string]int64{"a": 2, "b": 1, "c": 0, "nobody": 0} {
		got, err := b.OpenConnections(ctx, node, at(10))
		require.NoError(t, err)
		require.Equal(t, want, got, "node %s", node)
	}
}
