package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/parley-im/parley/storage/analytics"
)

// The analytics events: WriteEvents and the queries of analytics.Reader,
// with the semantics storage/analytics describes and
// storage/analytics/analyticstest checks (the same cases ClickHouse
// passes). Times are whole seconds since 1970; buckets are computed from
// them in UTC.

// bucketSeconds are the widths of the fixed buckets.
var bucketSeconds = map[analytics.Bucket]int64{
	analytics.BucketMinute: 60,
	analytics.BucketHour:   3600,
	analytics.BucketDay:    86400,
}

// The Store answers analytics queries and takes events.
var (
	_ analytics.Reader = (*Store)(nil)
	_ analytics.Writer = (*Store)(nil)
)

// WriteEvents inserts events in one transaction. Writing the same events
// again is safe: an event whose ID is stored already is skipped. Input
// errors (a zero ID, an unknown Kind, At zero or outside 1970 to 2106)
// are reported before anything is written. An empty events does nothing.
func (s *Store) WriteEvents(ctx context.Context, events []analytics.Event) error {
	const op = "write events"
	if len(events) == 0 {
		return s.fail(ctx, op, s.check(ctx))
	}
	for i := range events {
		if err := events[i].Validate(); err != nil {
			return fmt.Errorf("embedded: %s: event %d: %w", op, i, err)
		}
	}
	return s.write(ctx, op, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO events
			(event_id, kind, at, user_id, device_id, conversation_id, seq, latency_ms, node)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer func() { _ = stmt.Close() }()
		for i := range events {
			e := &events[i]
			if _, err := stmt.ExecContext(ctx, e.ID[:], int64(e.Kind), e.At.Unix(), e.UserID, e.DeviceID,
				e.ConversationID, i64(e.Seq), int64(analytics.LatencyMillis(e.Latency)), e.Node); err != nil {
				return err
			}
		}
		return nil
	})
}

// MessageVolume counts the messages sent in [from, to), per bucket.
func (s *Store) MessageVolume(ctx context.Context, from, to time.Time, bucket analytics.Bucket) ([]analytics.Count, error) {
	const op = "message volume"
	width, ok := bucketSeconds[bucket]
	if !ok {
		return nil, fmt.Errorf("embedded: %s: unknown bucket %d", op, int(bucket))
	}
	lo, hi, err := analytics.SecondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("embedded: %s: %w", op, err)
	}
	var out []analytics.Count
	err = s.query(ctx, op, `SELECT at - at % ? AS b, count(*) FROM events
		WHERE kind = ? AND at >= ? AND at < ?
		GROUP BY b ORDER BY b`,
		[]any{width, int64(analytics.EventMessageSent), lo, hi},
		func(rows *sql.Rows) error {
			var (
				start int64
				n     int64
			)
			if err := rows.Scan(&start, &n); err != nil {
				return err
			}
			out = append(out, analytics.Count{Start: time.Unix(start, 0).UTC(), Count: uint64(n)})
			return nil
		})
	return out, err
}

// DailyActiveUsers counts, per UTC day in [from, to), the distinct users
// who sent a message or opened a connection.
func (s *Store) DailyActiveUsers(ctx context.Context, from, to time.Time) ([]analytics.ActiveUsers, error) {
	return s.activeUsers(ctx, "daily active users", "at - at % 86400", from, to)
}

// MonthlyActiveUsers counts, per UTC calendar month, the distinct users
// who sent a message or opened a connection in [from, to). A month the
// range covers in part counts only the part in the range.
func (s *Store) MonthlyActiveUsers(ctx context.Context, from, to time.Time) ([]analytics.ActiveUsers, error) {
	return s.activeUsers(ctx, "monthly active users",
		`CAST(strftime('%s', at, 'unixepoch', 'start of month') AS INTEGER)`, from, to)
}

// activeUsers counts distinct users per period; period is fixed SQL over
// at, never caller input.
func (s *Store) activeUsers(ctx context.Context, op, period string, from, to time.Time) ([]analytics.ActiveUsers, error) {
	lo, hi, err := analytics.SecondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("embedded: %s: %w", op, err)
	}
	var out []analytics.ActiveUsers
	err = s.query(ctx, op, `SELECT `+period+` AS p, count(DISTINCT user_id) FROM events
		WHERE kind IN (?, ?) AND at >= ? AND at < ?
		GROUP BY p ORDER BY p`,
		[]any{int64(analytics.EventMessageSent), int64(analytics.EventConnectionOpened), lo, hi},
		func(rows *sql.Rows) error {
			var start, n int64
			if err := rows.Scan(&start, &n); err != nil {
				return err
			}
			out = append(out, analytics.ActiveUsers{Start: time.Unix(start, 0).UTC(), Users: uint64(n)})
			return nil
		})
	return out, err
}

// Latency returns the send→deliver and send→read latency percentiles of
// the events in [from, to), one entry per kind that has events
// (EventMessageDelivered first). Percentiles are exact: each is read as
// its two neighbouring values (an indexed count, then LIMIT 2 OFFSET
// rank), so memory stays constant however many events the range holds.
func (s *Store) Latency(ctx context.Context, from, to time.Time) ([]analytics.LatencyPercentiles, error) {
	const op = "latency"
	lo, hi, err := analytics.SecondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("embedded: %s: %w", op, err)
	}
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	var out []analytics.LatencyPercentiles
	for _, kind := range []analytics.EventKind{analytics.EventMessageDelivered, analytics.EventMessageRead} {
		var n int64
		if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM events WHERE kind = ? AND at >= ? AND at < ?`,
			int64(kind), lo, hi).Scan(&n); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		if n == 0 {
			continue
		}
		l := analytics.LatencyPercentiles{Kind: kind, Count: uint64(n)}
		for _, q := range []struct {
			p   float64
			dst *time.Duration
		}{{0.5, &l.P50}, {0.9, &l.P90}, {0.99, &l.P99}} {
			ms, err := s.percentile(ctx, kind, lo, hi, n, q.p)
			if err != nil {
				return nil, s.fail(ctx, op, err)
			}
			*q.dst = analytics.Millis(ms)
		}
		out = append(out, l)
	}
	return out, nil
}

// percentile is the p-th percentile of n latencies of kind in [lo, hi),
// interpolated between the values at ranks floor and floor+1 of
// p·(n−1) (zero-based), as ClickHouse's quantiles() does.
func (s *Store) percentile(ctx context.Context, kind analytics.EventKind, lo, hi, n int64, p float64) (float64, error) {
	rank := p * float64(n-1)
	base := math.Floor(rank)
	rows, err := s.r.QueryContext(ctx, `SELECT latency_ms FROM events
		WHERE kind = ? AND at >= ? AND at < ?
		ORDER BY latency_ms LIMIT 2 OFFSET ?`, int64(kind), lo, hi, int64(base))
	if err != nil {
		return 0, err
	}
	defer func() { _ = rows.Close() }()
	var vals []float64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			return 0, err
		}
		vals = append(vals, float64(v))
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	switch len(vals) {
	case 0:
		return 0, errors.New("percentile: no rows at rank")
	case 1:
		return vals[0], nil
	}
	return vals[0] + (rank-base)*(vals[1]-vals[0]), nil
}

// BusiestConversations returns the n conversations with the most
// messages sent in [from, to), most first (ties by conversation ID). n
// must be positive.
func (s *Store) BusiestConversations(ctx context.Context, from, to time.Time, n int) ([]analytics.ConversationVolume, error) {
	const op = "busiest conversations"
	if n <= 0 {
		return nil, fmt.Errorf("embedded: %s: n %d is not positive", op, n)
	}
	lo, hi, err := analytics.SecondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("embedded: %s: %w", op, err)
	}
	var out []analytics.ConversationVolume
	err = s.query(ctx, op, `SELECT conversation_id, count(*) AS c FROM events
		WHERE kind = ? AND at >= ? AND at < ?
		GROUP BY conversation_id ORDER BY c DESC, conversation_id LIMIT ?`,
		[]any{int64(analytics.EventMessageSent), lo, hi, n},
		func(rows *sql.Rows) error {
			var (
				c analytics.ConversationVolume
				m int64
			)
			if err := rows.Scan(&c.ConversationID, &m); err != nil {
				return err
			}
			c.Messages = uint64(m)
			out = append(out, c)
			return nil
		})
	return out, err
}

// ConnectionsOverTime counts the connections opened and closed per
// bucket in [from, to), with the connections open at each bucket's end
// (counted from every event before it, in the range or not).
func (s *Store) ConnectionsOverTime(ctx context.Context, from, to time.Time, bucket analytics.Bucket) ([]analytics.Connections, error) {
	const op = "connections over time"
	width, ok := bucketSeconds[bucket]
	if !ok {
		return nil, fmt.Errorf("embedded: %s: unknown bucket %d", op, int(bucket))
	}
	lo, hi, err := analytics.SecondsRange(from, to)
	if err != nil {
		return nil, fmt.Errorf("embedded: %s: %w", op, err)
	}
	opened, closed := int64(analytics.EventConnectionOpened), int64(analytics.EventConnectionClosed)
	var open int64
	err = s.query(ctx, op+": before range", `SELECT
			coalesce(sum(kind = ?), 0) - coalesce(sum(kind = ?), 0)
		FROM events WHERE kind IN (?, ?) AND at < ?`,
		[]any{opened, closed, opened, closed, lo},
		func(rows *sql.Rows) error { return rows.Scan(&open) })
	if err != nil {
		return nil, err
	}
	var out []analytics.Connections
	err = s.query(ctx, op, `SELECT at - at % ? AS b, sum(kind = ?), sum(kind = ?) FROM events
		WHERE kind IN (?, ?) AND at >= ? AND at < ?
		GROUP BY b ORDER BY b`,
		[]any{width, opened, closed, opened, closed, lo, hi},
		func(rows *sql.Rows) error {
			var start, o, c int64
			if err := rows.Scan(&start, &o, &c); err != nil {
				return err
			}
			open += o - c
			out = append(out, analytics.Connections{
				Start: time.Unix(start, 0).UTC(), Opened: uint64(o), Closed: uint64(c), Open: open,
			})
			return nil
		})
	return out, err
}

// query runs one read on the read pool and hands each row to row.
func (s *Store) query(ctx context.Context, op, query string, args []any, row func(*sql.Rows) error) error {
	if err := s.check(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	for rows.Next() {
		if err := row(rows); err != nil {
			return s.fail(ctx, op, err)
		}
	}
	return s.fail(ctx, op, rows.Err())
}

// pruneBatch is how many events one write transaction of PruneEvents
// deletes: the write lock is held for some milliseconds at a time.
const pruneBatch = 10_000

// PruneEvents deletes the events older than cutoff (whole seconds, as they
// are stored), as analytics.Pruner specifies: per kind through the
// (kind, at) index, pruneBatch at a time.
func (s *Store) PruneEvents(ctx context.Context, cutoff time.Time) error {
	const op = "prune events"
	for kind := analytics.EventKind(1); kind.Valid(); kind++ {
		for {
			var n int64
			err := s.write(ctx, op, func(tx *sql.Tx) error {
				res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE event_id IN (
					SELECT event_id FROM events WHERE kind = ? AND at < ? LIMIT ?)`,
					int64(kind), cutoff.Unix(), pruneBatch)
				if err != nil {
					return err
				}
				n, err = res.RowsAffected()
				return err
			})
			if err != nil {
				return err
			}
			if n < pruneBatch {
				break
			}
		}
	}
	return nil
}

// OpenConnections counts node's connections opened and not closed before
// before, as analytics.ConnectionCounter specifies.
func (s *Store) OpenConnections(ctx context.Context, node string, before time.Time) (int64, error) {
	var open int64
	err := s.query(ctx, "open connections", `SELECT
			coalesce(sum(kind = ?1), 0) - coalesce(sum(kind = ?2), 0)
		FROM events WHERE kind IN (?1, ?2) AND node = ?3 AND at < ?4`,
		[]any{int64(analytics.EventConnectionOpened), int64(analytics.EventConnectionClosed), node, before.Unix()},
		func(rows *sql.Rows) error { return rows.Scan(&open) })
	return max(open, 0), err
}
