package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/clickhouse"
)

// day0 is midnight UTC of the day the query tests start on.
var day0 = time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)

// ev is an event of kind at t by user in conversation conv, with a
// fresh ID.
func ev(kind clickhouse.EventKind, t time.Time, user, conv string) clickhouse.Event {
	return clickhouse.Event{ID: uuid.New(), Kind: kind, At: t, UserID: user, DeviceID: "d-" + user, ConversationID: conv, Node: "n1"}
}

// writeTwice writes events twice, as a retry of a batch that had landed
// would: every query must count each event once.
func writeTwice(t *testing.T, db *clickhouse.DB, events []clickhouse.Event) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, db.WriteEvents(ctx, events))
	require.NoError(t, db.WriteEvents(ctx, events))
}

func TestMessageVolume(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	sent := func(t time.Time) clickhouse.Event { return ev(clickhouse.EventMessageSent, t, "alice", "c1") }
	sec := func(s float64) time.Time { return day0.Add(time.Duration(s * float64(time.Second))) }
	writeTwice(t, db, []clickhouse.Event{
		sent(sec(-1)), // before the range
		sent(sec(0)), sent(sec(59)), sent(sec(60)), sent(sec(120.9)), sent(sec(3599)),
		sent(sec(3600)), sent(sec(86399)), sent(sec(86400)),
		sent(sec(2 * 86400)), // at the range's end: excluded
		ev(clickhouse.EventMessageDelivered, sec(10), "bob", "c1"),
		ev(clickhouse.EventConnectionOpened, sec(10), "bob", ""),
	})
	at := func(d time.Duration, n uint64) clickhouse.Count {
		return clickhouse.Count{Start: day0.Add(d), Count: n}
	}
	for _, tc := range []struct {
		name     string
		from, to time.Time
		bucket   clickhouse.Bucket
		want     []clickhouse.Count
	}{
		{name: "minute", from: day0, to: day0.Add(48 * time.Hour), bucket: clickhouse.BucketMinute, want: []clickhouse.Count{
			at(0, 2), at(time.Minute, 1), at(2*time.Minute, 1), at(59*time.Minute, 1),
			at(time.Hour, 1), at(23*time.Hour+59*time.Minute, 1), at(24*time.Hour, 1),
		}},
		{name: "hour", from: day0, to: day0.Add(48 * time.Hour), bucket: clickhouse.BucketHour, want: []clickhouse.Count{
			at(0, 5), at(time.Hour, 1), at(23*time.Hour, 1), at(24*time.Hour, 1),
		}},
		{name: "day", from: day0, to: day0.Add(48 * time.Hour), bucket: clickhouse.BucketDay, want: []clickhouse.Count{
			at(0, 7), at(24*time.Hour, 1),
		}},
		{name: "end_is_exclusive", from: day0, to: sec(60), bucket: clickhouse.BucketDay, want: []clickhouse.Count{at(0, 2)}},
		{name: "end_includes_last_second", from: day0, to: sec(60.5), bucket: clickhouse.BucketDay, want: []clickhouse.Count{at(0, 3)}},
		{name: "subsecond_from_skips_its_second", from: sec(0.5), to: sec(60), bucket: clickhouse.BucketMinute, want: []clickhouse.Count{at(0, 1)}},
		{name: "whole_range_with_the_end_event", from: sec(-1), to: sec(2*86400 + 1), bucket: clickhouse.BucketDay, want: []clickhouse.Count{
			at(-24*time.Hour, 1), at(0, 7), at(24*time.Hour, 1), at(48*time.Hour, 1),
		}},
		{name: "empty", from: sec(5), to: sec(59), bucket: clickhouse.BucketHour, want: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := db.MessageVolume(ctx, tc.from, tc.to, tc.bucket)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	t.Run("bad_input", func(t *testing.T) {
		t.Parallel()
		_, err := db.MessageVolume(ctx, day0, day0, clickhouse.BucketDay)
		require.ErrorContains(t, err, "empty range")
		_, err = db.MessageVolume(ctx, day0, day0.Add(time.Hour), clickhouse.Bucket(0))
		require.ErrorContains(t, err, "unknown bucket")
	})
}

func TestActiveUsers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	day := func(d int) time.Time { return day0.AddDate(0, 0, d) }
	april := time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)
	writeTwice(t, db, []clickhouse.Event{
		ev(clickhouse.EventMessageSent, day(0), "alice", "c1"),
		ev(clickhouse.EventMessageSent, day(0).Add(time.Hour), "alice", "c1"),
		ev(clickhouse.EventConnectionOpened, day(0).Add(2*time.Hour), "bob", ""),
		ev(clickhouse.EventMessageRead, day(0).Add(3*time.Hour), "carol", "c1"),    // reading is not activity here
		ev(clickhouse.EventConnectionClosed, day(0).Add(3*time.Hour), "carol", ""), // nor closing
		ev(clickhouse.EventConnectionOpened, day(1), "alice", ""),
		ev(clickhouse.EventMessageSent, day(1).Add(time.Hour), "dave", "c2"),
		ev(clickhouse.EventMessageSent, april.Add(-time.Second), "frank", "c2"),
		ev(clickhouse.EventMessageSent, april, "erin", "c2"),
		ev(clickhouse.EventMessageSent, april.AddDate(0, 0, 1), "gina", "c2"), // at the range's end
	})
	from, to := day0, april.AddDate(0, 0, 1)

	daily, err := db.DailyActiveUsers(ctx, from, to)
	require.NoError(t, err)
	require.Equal(t, []clickhouse.ActiveUsers{
		{Start: day(0), Users: 2},
		{Start: day(1), Users: 2},
		{Start: april.AddDate(0, 0, -1), Users: 1},
		{Start: april, Users: 1},
	}, daily)

	monthly, err := db.MonthlyActiveUsers(ctx, from, to)
	require.NoError(t, err)
	require.Equal(t, []clickhouse.ActiveUsers{
		{Start: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), Users: 4}, // alice, bob, dave, frank
		{Start: april, Users: 1},
	}, monthly)
}

func TestLatency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	var events []clickhouse.Event
	for i := 1; i <= 100; i++ {
		e := ev(clickhouse.EventMessageDelivered, day0.Add(time.Duration(i)*time.Second), "bob", "c1")
		e.Seq, e.Latency = uint64(i), time.Duration(i)*time.Millisecond+400*time.Microsecond // stored as i ms
		events = append(events, e)
	}
	for i := 1; i <= 10; i++ {
		e := ev(clickhouse.EventMessageRead, day0.Add(time.Duration(i)*time.Second), "bob", "c1")
		e.Seq, e.Latency = uint64(i), time.Second
		events = append(events, e)
	}
	late := ev(clickhouse.EventMessageRead, day0.Add(time.Hour), "bob", "c1") // at the range's end
	late.Latency = time.Hour
	sent := ev(clickhouse.EventMessageSent, day0, "alice", "c1")
	writeTwice(t, db, append(events, late, sent))

	got, err := db.Latency(ctx, day0, day0.Add(time.Hour))
	require.NoError(t, err)
	require.Len(t, got, 2)
	// quantiles() interpolates between neighbours: p of 1..100 is
	// 1 + p*99.
	require.Equal(t, clickhouse.EventMessageDelivered, got[0].Kind)
	require.EqualValues(t, 100, got[0].Count)
	require.InDelta(t, 50.5, got[0].P50.Seconds()*1000, 0.001)
	require.InDelta(t, 90.1, got[0].P90.Seconds()*1000, 0.001)
	require.InDelta(t, 99.01, got[0].P99.Seconds()*1000, 0.001)
	require.Equal(t, clickhouse.LatencyPercentiles{
		Kind: clickhouse.EventMessageRead, Count: 10, P50: time.Second, P90: time.Second, P99: time.Second,
	}, got[1])
}

func TestBusiestConversations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	var events []clickhouse.Event
	add := func(conv string, n int, at time.Time) {
		for i := range n {
			e := ev(clickhouse.EventMessageSent, at.Add(time.Duration(i)*time.Second), "alice", conv)
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
	events = append(events, ev(clickhouse.EventMessageRead, day0, "bob", "c4"), ev(clickhouse.EventMessageRead, day0, "bob", "c4"))
	writeTwice(t, db, events)

	got, err := db.BusiestConversations(ctx, day0, to, 3)
	require.NoError(t, err)
	require.Equal(t, []clickhouse.ConversationVolume{
		{ConversationID: "c1", Messages: 5},
		{ConversationID: "c2", Messages: 3}, // ties in conversation order
		{ConversationID: "c3", Messages: 3},
	}, got)

	got, err = db.BusiestConversations(ctx, day0, to, 10)
	require.NoError(t, err)
	require.Len(t, got, 4)

	_, err = db.BusiestConversations(ctx, day0, to, 0)
	require.ErrorContains(t, err, "not positive")
}

func TestConnectionsOverTime(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	opened := func(at time.Time) clickhouse.Event { return ev(clickhouse.EventConnectionOpened, at, "alice", "") }
	closed := func(at time.Time) clickhouse.Event { return ev(clickhouse.EventConnectionClosed, at, "alice", "") }
	h := func(x float64) time.Time { return day0.Add(time.Duration(x * float64(time.Hour))) }
	writeTwice(t, db, []clickhouse.Event{
		// Before the range: 3 opened, 1 closed.
		opened(h(-5)), opened(h(-4)), opened(h(-1)), closed(h(-0.5)),
		opened(h(0)), opened(h(0.5)), closed(h(0.99)),
		closed(h(1)), closed(h(1.5)),
		opened(h(3.25)),
		opened(h(4)), // at the range's end
		ev(clickhouse.EventMessageSent, h(2), "alice", "c1"),
	})
	got, err := db.ConnectionsOverTime(ctx, day0, h(4), clickhouse.BucketHour)
	require.NoError(t, err)
	require.Equal(t, []clickhouse.Connections{
		{Start: h(0), Opened: 2, Closed: 1, Open: 3},
		{Start: h(1), Opened: 0, Closed: 2, Open: 1},
		{Start: h(3), Opened: 1, Closed: 0, Open: 2},
	}, got)

	got, err = db.ConnectionsOverTime(ctx, h(-6), h(-2), clickhouse.BucketDay)
	require.NoError(t, err)
	require.Equal(t, []clickhouse.Connections{{Start: h(-24), Opened: 2, Open: 2}}, got)
}

func TestWriteEventsRejectsBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	good := ev(clickhouse.EventMessageSent, day0, "alice", "c1")
	for _, tc := range []struct {
		name  string
		edit  func(*clickhouse.Event)
		error string
	}{
		{name: "zero_id", edit: func(e *clickhouse.Event) { e.ID = uuid.Nil }, error: "zero id"},
		{name: "unknown_kind", edit: func(e *clickhouse.Event) { e.Kind = 9 }, error: "unknown kind"},
		{name: "zero_time", edit: func(e *clickhouse.Event) { e.At = time.Time{} }, error: "zero time"},
		{name: "before_1970", edit: func(e *clickhouse.Event) { e.At = time.Unix(-1, 0) }, error: "time 1969-12-31T23:59:59Z outside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := good
			tc.edit(&e)
			err := db.WriteEvents(ctx, []clickhouse.Event{good, e})
			require.ErrorContains(t, err, "event 1: "+tc.error)
		})
	}
}
