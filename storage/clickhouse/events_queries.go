package clickhouse

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-im/parley/storage/analytics"
)

// The analytics queries. Each reads events in a time range [from, to):
// at >= from and at < to, where at is the event's time in whole seconds
// (so an event at 12:00:00.7 is in a range that starts at 12:00:00 and
// in none that starts at 12:00:00.5). Each call has the DB's
// CallTimeout. Buckets are in UTC, and only buckets with events are
// returned, oldest first. Queries that count events read with FINAL, so
// a batch written twice (a retry) counts once.

// The result types are storage/analytics's, shared with the embedded
// store.
type (
	// Bucket is the width of the time buckets a query groups by.
	Bucket = analytics.Bucket
	// Count is a number of events in a bucket.
	Count = analytics.Count
	// ActiveUsers is how many distinct users were active in a period.
	ActiveUsers = analytics.ActiveUsers
	// LatencyPercentiles summarise the latencies of one kind of event.
	// Here they come from ClickHouse's quantiles(), which interpolates
	// and is exact up to 8192 values per group, a sample beyond.
	LatencyPercentiles = analytics.LatencyPercentiles
	// ConversationVolume is how many messages were sent in a
	// conversation.
	ConversationVolume = analytics.ConversationVolume
	// Connections are the stream connections of one bucket.
	Connections = analytics.Connections
)

// The bucket widths.
const (
	BucketMinute = analytics.BucketMinute
	BucketHour   = analytics.BucketHour
	BucketDay    = analytics.BucketDay
)

// bucketFuncs are the SQL functions of each Bucket: fixed text chosen by
// the caller's Bucket, never the caller's input itself.
var bucketFuncs = map[Bucket]string{
	BucketMinute: "toStartOfMinute",
	BucketHour:   "toStartOfHour",
	BucketDay:    "toStartOfDay",
}

// DB answers every analytics query.
var _ analytics.Reader = (*DB)(nil)

// MessageVolume counts the messages sent in [from, to), per bucket.
func (db *DB) MessageVolume(ctx context.Context, from, to time.Time, bucket Bucket) ([]Count, error) {
	const op = "message volume"
	fn, ok := bucketFuncs[bucket]
	if !ok {
		return nil, fmt.Errorf("clickhouse: %s: unknown bucket %d", op, int(bucket))
	}
	lo, hi, err := secondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %s: %w", op, err)
	}
	var out []Count
	err = db.query(ctx, op, `SELECT `+fn+`(at) AS b, count()
		FROM events FINAL
		WHERE kind = 'message_sent' AND at >= toDateTime(?) AND at < toDateTime(?)
		GROUP BY b ORDER BY b`,
		[]any{lo, hi},
		func(scan func(...any) error) error {
			var c Count
			if err := scan(&c.Start, &c.Count); err != nil {
				return err
			}
			c.Start = c.Start.UTC()
			out = append(out, c)
			return nil
		})
	return out, err
}

// DailyActiveUsers counts, per UTC day in [from, to), the distinct users
// who sent a message or opened a connection.
func (db *DB) DailyActiveUsers(ctx context.Context, from, to time.Time) ([]ActiveUsers, error) {
	return db.activeUsers(ctx, "daily active users", "toStartOfDay", from, to)
}

// MonthlyActiveUsers counts, per UTC calendar month, the distinct users
// who sent a message or opened a connection in [from, to). A month the
// range covers in part counts only the part in the range: to get whole
// months, pass a range from the first of a month to the first of a
// later one.
func (db *DB) MonthlyActiveUsers(ctx context.Context, from, to time.Time) ([]ActiveUsers, error) {
	return db.activeUsers(ctx, "monthly active users", "toStartOfMonth", from, to)
}

// activeUsers counts distinct users per period (fn, fixed text). No
// FINAL: duplicates do not change a distinct count.
func (db *DB) activeUsers(ctx context.Context, op, fn string, from, to time.Time) ([]ActiveUsers, error) {
	lo, hi, err := secondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %s: %w", op, err)
	}
	var out []ActiveUsers
	err = db.query(ctx, op, `SELECT toDateTime(`+fn+`(at), 'UTC') AS p, uniqExact(user_id)
		FROM events
		WHERE kind IN ('message_sent', 'connection_opened')
			AND at >= toDateTime(?) AND at < toDateTime(?)
		GROUP BY p ORDER BY p`,
		[]any{lo, hi},
		func(scan func(...any) error) error {
			var a ActiveUsers
			if err := scan(&a.Start, &a.Users); err != nil {
				return err
			}
			a.Start = a.Start.UTC()
			out = append(out, a)
			return nil
		})
	return out, err
}

// Latency returns the send→deliver and send→read latency percentiles of
// the events in [from, to), one entry per kind that has events
// (EventMessageDelivered first).
func (db *DB) Latency(ctx context.Context, from, to time.Time) ([]LatencyPercentiles, error) {
	const op = "latency"
	lo, hi, err := secondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %s: %w", op, err)
	}
	var out []LatencyPercentiles
	// toFloat64: on integers, 18.16's quantiles returns a sample value
	// (50 for the median of 1..100) where current releases interpolate
	// (50.5); on floats both interpolate.
	err = db.query(ctx, op, `SELECT toInt8(kind) AS k, count(), quantiles(0.5, 0.9, 0.99)(toFloat64(latency_ms))
		FROM events FINAL
		WHERE kind IN ('message_delivered', 'message_read')
			AND at >= toDateTime(?) AND at < toDateTime(?)
		GROUP BY k ORDER BY k`,
		[]any{lo, hi},
		func(scan func(...any) error) error {
			var (
				l    LatencyPercentiles
				kind int8
				qs   []float64
			)
			if err := scan(&kind, &l.Count, &qs); err != nil {
				return err
			}
			if len(qs) != 3 {
				return fmt.Errorf("quantiles returned %d values, want 3", len(qs))
			}
			l.Kind = EventKind(kind)
			l.P50, l.P90, l.P99 = analytics.Millis(qs[0]), analytics.Millis(qs[1]), analytics.Millis(qs[2])
			out = append(out, l)
			return nil
		})
	return out, err
}

// BusiestConversations returns the n conversations with the most
// messages sent in [from, to), most first (ties by conversation ID).
// n must be positive.
func (db *DB) BusiestConversations(ctx context.Context, from, to time.Time, n int) ([]ConversationVolume, error) {
	const op = "busiest conversations"
	if n <= 0 {
		return nil, fmt.Errorf("clickhouse: %s: n %d is not positive", op, n)
	}
	lo, hi, err := secondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %s: %w", op, err)
	}
	var out []ConversationVolume
	err = db.query(ctx, op, `SELECT conversation_id, count() AS c
		FROM events FINAL
		WHERE kind = 'message_sent' AND at >= toDateTime(?) AND at < toDateTime(?)
		GROUP BY conversation_id
		ORDER BY c DESC, conversation_id
		LIMIT ?`,
		[]any{lo, hi, n},
		func(scan func(...any) error) error {
			var c ConversationVolume
			if err := scan(&c.ConversationID, &c.Messages); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	return out, err
}

// ConnectionsOverTime counts the connections opened and closed per
// bucket in [from, to), with the connections open at each bucket's end.
func (db *DB) ConnectionsOverTime(ctx context.Context, from, to time.Time, bucket Bucket) ([]Connections, error) {
	const op = "connections over time"
	fn, ok := bucketFuncs[bucket]
	if !ok {
		return nil, fmt.Errorf("clickhouse: %s: unknown bucket %d", op, int(bucket))
	}
	lo, hi, err := secondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: %s: %w", op, err)
	}
	// The connections open at from: what the running total starts at.
	var open int64
	err = db.query(ctx, op+": before range", `SELECT
			toInt64(countIf(kind = 'connection_opened')) - toInt64(countIf(kind = 'connection_closed'))
		FROM events FINAL
		WHERE kind IN ('connection_opened', 'connection_closed') AND at < toDateTime(?)`,
		[]any{lo},
		func(scan func(...any) error) error { return scan(&open) })
	if err != nil {
		return nil, err
	}
	// The running total is summed here rather than with
	// runningAccumulate: it is a handful of rows, and the SQL stays what
	// every version (and SQLite) can answer.
	var out []Connections
	err = db.query(ctx, op, `SELECT `+fn+`(at) AS b,
			countIf(kind = 'connection_opened'), countIf(kind = 'connection_closed')
		FROM events FINAL
		WHERE kind IN ('connection_opened', 'connection_closed')
			AND at >= toDateTime(?) AND at < toDateTime(?)
		GROUP BY b ORDER BY b`,
		[]any{lo, hi},
		func(scan func(...any) error) error {
			var c Connections
			if err := scan(&c.Start, &c.Opened, &c.Closed); err != nil {
				return err
			}
			c.Start = c.Start.UTC()
			open += int64(c.Opened) - int64(c.Closed)
			c.Open = open
			out = append(out, c)
			return nil
		})
	return out, err
}

// query runs one read with the call timeout and hands each row's Scan
// to row.
func (db *DB) query(ctx context.Context, op, query string, args []any, row func(scan func(...any) error) error) error {
	if db.closed.Load() {
		return errClosed(op)
	}
	cctx, cancel := db.call(ctx)
	defer cancel()
	rows, err := db.conn.Query(cctx, query, args...)
	if err != nil {
		return wrapErr(ctx, op, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows.Scan); err != nil {
			return wrapErr(ctx, op+": scan", err)
		}
	}
	if err := rows.Err(); err != nil {
		return wrapErr(ctx, op, err)
	}
	return nil
}

// secondsRange is analytics.SecondsRange clamped to DateTime's range,
// as its UInt32.
func secondsRange(from, to time.Time) (lo, hi uint32, err error) {
	l, h, err := analytics.SecondsRange(from, to)
	if err != nil {
		return 0, 0, err
	}
	return dateTime(l), dateTime(h), nil
}

// dateTime clamps s seconds to DateTime's UInt32.
func dateTime(s int64) uint32 {
	return uint32(min(max(s, 0), 1<<32-1))
}

// OpenConnections counts node's connections opened and not closed before
// before, as analytics.ConnectionCounter specifies.
func (db *DB) OpenConnections(ctx context.Context, node string, before time.Time) (int64, error) {
	const op = "open connections"
	if before.Before(minTime) || before.After(maxTime) {
		return 0, fmt.Errorf("clickhouse: %s: time %s outside DateTime's range", op, before.UTC().Format(time.RFC3339))
	}
	var open int64
	err := db.query(ctx, op, `SELECT
			toInt64(countIf(kind = 'connection_opened')) - toInt64(countIf(kind = 'connection_closed'))
		FROM events FINAL
		WHERE kind IN ('connection_opened', 'connection_closed') AND node = ? AND at < toDateTime(?)`,
		[]any{node, before.Unix()},
		func(scan func(...any) error) error { return scan(&open) })
	return max(open, 0), err
}
