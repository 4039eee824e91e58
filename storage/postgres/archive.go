package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

var (
	_ storage.ArchiveOutbox = (*Store)(nil)
	_ storage.LeaseStore    = (*Store)(nil)
)

// EnableArchive turns the archive outbox on (migrations 0005 and 0008), as
// storage.ArchiveOutbox specifies. The first call takes a SHARE lock on
// messages, which waits for the transactions writing messages to commit
// and holds new ones back until it commits: every message is then either
// committed before the switch, where the backfill finds it, or written
// after it, where the triggers enqueue it. The lock is held only to flip
// the flag. Later calls only read the flag.
func (s *Store) EnableArchive(ctx context.Context) error {
	const op = "enable archive"
	if err := s.check(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	var enabled bool
	if err := s.pool.QueryRow(ctx, `SELECT enabled FROM archive_state`).Scan(&enabled); err != nil {
		return s.fail(ctx, op, err)
	}
	if enabled {
		return nil
	}
	return s.tx(ctx, op, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE messages IN SHARE MODE`); err != nil {
			return err
		}
		// Under the lock nobody else can be enabling it either.
		_, err := tx.Exec(ctx, `UPDATE archive_state SET enabled = true,
			backfill_done = false, backfill_conversation = '', backfill_seq = 0 WHERE NOT enabled`)
		return err
	})
}

// DisableArchive turns the outbox off, as storage.ArchiveOutbox
// specifies. Like EnableArchive it first takes a SHARE lock on messages,
// which waits for the transactions writing messages to commit: none of
// them can then add an entry after the delete.
func (s *Store) DisableArchive(ctx context.Context) error {
	return s.tx(ctx, "disable archive", func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE messages IN SHARE MODE`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT 1 FROM archive_state FOR UPDATE`); err != nil {
			return err
		}
		var trimmed bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM conversations WHERE archived_seq > 0)`).Scan(&trimmed); err != nil {
			return err
		}
		if trimmed {
			return storage.ErrHistoryArchived
		}
		if _, err := tx.Exec(ctx, `UPDATE archive_state SET enabled = false, backfill_done = true`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM archive_outbox`)
		return err
	})
}

// BackfillOutbox enqueues the next page of messages from before
// EnableArchive, as storage.ArchiveOutbox specifies: one range scan of the
// primary key from the cursor, whose row lock keeps two callers from
// enqueuing the same page.
func (s *Store) BackfillOutbox(ctx context.Context, limit int) (int, bool, error) {
	const op = "backfill outbox"
	var (
		n    int
		done bool
	)
	err := s.tx(ctx, op, func(tx pgx.Tx) error {
		var (
			enabled bool
			conv    string
			seq     int64
		)
		if err := tx.QueryRow(ctx, `SELECT enabled, backfill_done, backfill_conversation, backfill_seq
			FROM archive_state FOR UPDATE`).Scan(&enabled, &done, &conv, &seq); err != nil {
			return err
		}
		if !enabled {
			done = false // the default of a store never enabled
			return nil
		}
		if done {
			return nil
		}
		rows, err := tx.Query(ctx, `SELECT conversation_id, seq FROM messages
			WHERE (conversation_id, seq) > ($1, $2) ORDER BY conversation_id, seq LIMIT $3`, conv, seq, max(limit, 1))
		if err != nil {
			return err
		}
		var (
			convs []string
			seqs  []int64
		)
		for rows.Next() {
			var (
				c  string
				sq int64
			)
			if err := rows.Scan(&c, &sq); err != nil {
				rows.Close()
				return err
			}
			convs, seqs = append(convs, c), append(seqs, sq)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		n, done = len(convs), len(convs) < max(limit, 1)
		if n > 0 {
			if _, err := tx.Exec(ctx, `INSERT INTO archive_outbox (conversation_id, seq)
				SELECT * FROM unnest($1::text[], $2::bigint[])`, convs, seqs); err != nil {
				return err
			}
			conv, seq = convs[n-1], seqs[n-1]
		}
		_, err = tx.Exec(ctx, `UPDATE archive_state SET backfill_done = $1, backfill_conversation = $2, backfill_seq = $3`,
			done, conv, seq)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return n, done, nil
}

// ReadOutbox returns the oldest outbox entries, at most limit (at least
// 1). Only committed entries are visible (read committed).
func (s *Store) ReadOutbox(ctx context.Context, limit int) ([]storage.OutboxEntry, error) {
	const op = "read outbox"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT id, conversation_id, seq, enqueued_at FROM archive_outbox ORDER BY id LIMIT $1`,
		max(limit, 1))
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer rows.Close()
	var out []storage.OutboxEntry
	for rows.Next() {
		var (
			e   storage.OutboxEntry
			seq int64
		)
		if err := rows.Scan(&e.ID, &e.Key.ConversationID, &seq, &e.EnqueuedAt); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		e.Key.Seq = u64(seq)
		e.EnqueuedAt = e.EnqueuedAt.UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}

// LoadMessages returns the current state of the named messages, each
// once, with their indexed text, in one query.
func (s *Store) LoadMessages(ctx context.Context, keys []storage.MessageKey) ([]storage.ArchiveRecord, error) {
	const op = "load messages"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	if len(keys) == 0 {
		return nil, nil
	}
	seen := make(map[storage.MessageKey]struct{}, len(keys))
	convs := make([]string, 0, len(keys))
	seqs := make([]int64, 0, len(keys))
	for _, k := range keys {
		if has(seen, k) {
			continue
		}
		seen[k] = struct{}{}
		convs, seqs = append(convs, k.ConversationID), append(seqs, i64(k.Seq))
	}
	rows, err := s.pool.Query(ctx, `SELECT `+messageColumnsM+`, coalesce(f.text, '') FROM messages m
		JOIN unnest($1::text[], $2::bigint[]) AS k (c, s) ON m.conversation_id = k.c AND m.seq = k.s
		LEFT JOIN message_search f ON f.conversation_id = m.conversation_id AND f.seq = m.seq`,
		convs, seqs)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer rows.Close()
	out := make([]storage.ArchiveRecord, 0, len(convs))
	for rows.Next() {
		var r storage.ArchiveRecord
		r.Message, err = scanMessage(scanFunc(func(dest ...any) error {
			return rows.Scan(append(dest, &r.SearchText)...)
		}))
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}

// AckOutbox deletes the outbox entries with these ids.
func (s *Store) AckOutbox(ctx context.Context, ids []int64) error {
	const op = "ack outbox"
	if err := s.check(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM archive_outbox WHERE id = ANY($1::bigint[])`, ids); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// OutboxLag returns how many entries wait and when the oldest was
// enqueued. The count scans the outbox, which the archiver keeps short.
func (s *Store) OutboxLag(ctx context.Context) (int, time.Time, error) {
	const op = "outbox lag"
	if err := s.check(ctx); err != nil {
		return 0, time.Time{}, s.fail(ctx, op, err)
	}
	var (
		n      int64
		oldest *time.Time
	)
	if err := s.pool.QueryRow(ctx, `SELECT count(*), (SELECT enqueued_at FROM archive_outbox ORDER BY id LIMIT 1)
		FROM archive_outbox`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, s.fail(ctx, op, err)
	}
	return int(n), fromOpt(oldest), nil
}

// AcquireLease takes or renews the lease with one conditional upsert,
// decided on the server's clock: it succeeds when the lease is free,
// expired, or holder's already.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	const op = "acquire lease"
	if err := s.check(ctx); err != nil {
		return false, s.fail(ctx, op, err)
	}
	var got string
	err := s.pool.QueryRow(ctx, `INSERT INTO leases (name, holder, expires_at)
		VALUES ($1, $2, clock_timestamp() + $3 * interval '1 microsecond')
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
		WHERE leases.holder = excluded.holder OR leases.expires_at <= clock_timestamp()
		RETURNING holder`, name, holder, ttl.Microseconds()).Scan(&got)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, nil
	case err != nil:
		return false, s.fail(ctx, op, err)
	}
	return true, nil
}

// ReleaseLease deletes the lease if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	const op = "release lease"
	if err := s.check(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE name = $1 AND holder = $2`, name, holder); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}
