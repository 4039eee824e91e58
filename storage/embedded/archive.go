package embedded

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/parley-im/parley/storage"
)

var (
	_ storage.ArchiveOutbox = (*Store)(nil)
	_ storage.LeaseStore    = (*Store)(nil)
)

// maxLoadBatch bounds the keys of one LoadMessages query (SQLite's
// default limit of bound parameters is 32766; two per key).
const maxLoadBatch = 1000

// EnableArchive turns the archive outbox on (migrations 0005 and 0008), as
// storage.ArchiveOutbox specifies: in one write transaction, which holds
// SQLite's write lock, so every message is either committed before the
// switch (the backfill finds it) or after it (the triggers enqueue it).
func (s *Store) EnableArchive(ctx context.Context) error {
	return s.write(ctx, "enable archive", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE archive_state SET enabled = 1,
			backfill_done = 0, backfill_conversation = '', backfill_seq = 0 WHERE id = 1 AND enabled = 0`)
		return err
	})
}

// DisableArchive turns the outbox off, as storage.ArchiveOutbox
// specifies, in one write transaction.
func (s *Store) DisableArchive(ctx context.Context) error {
	return s.write(ctx, "disable archive", func(tx *sql.Tx) error {
		var trimmed bool
		if err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM conversations WHERE archived_seq > 0)`).Scan(&trimmed); err != nil {
			return err
		}
		if trimmed {
			return storage.ErrHistoryArchived
		}
		if _, err := tx.ExecContext(ctx, `UPDATE archive_state SET enabled = 0, backfill_done = 1 WHERE id = 1`); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM archive_outbox`)
		return err
	})
}

// BackfillOutbox enqueues the next page of messages from before
// EnableArchive, as storage.ArchiveOutbox specifies: one range scan of the
// primary key from the cursor, in one write transaction.
func (s *Store) BackfillOutbox(ctx context.Context, limit int) (int, bool, error) {
	limit = max(limit, 1)
	var (
		n    int
		done bool
	)
	err := s.write(ctx, "backfill outbox", func(tx *sql.Tx) error {
		var (
			enabled bool
			conv    string
			seq     int64
		)
		if err := tx.QueryRowContext(ctx, `SELECT enabled, backfill_done, backfill_conversation, backfill_seq
			FROM archive_state WHERE id = 1`).Scan(&enabled, &done, &conv, &seq); err != nil {
			return err
		}
		if !enabled {
			done = false // the default of a store never enabled
			return nil
		}
		if done {
			return nil
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO archive_outbox (conversation_id, seq)
			SELECT conversation_id, seq FROM messages WHERE (conversation_id, seq) > (?, ?)
			ORDER BY conversation_id, seq LIMIT ?`, conv, seq, limit)
		if err != nil {
			return err
		}
		affected, err := res.RowsAffected()
		if err != nil {
			return err
		}
		n, done = int(affected), int(affected) < limit
		if n > 0 {
			// The page's last key: the newest outbox row, since the page
			// was inserted last (under the write lock) and in key order.
			if err := tx.QueryRowContext(ctx, `SELECT conversation_id, seq FROM archive_outbox ORDER BY id DESC LIMIT 1`).
				Scan(&conv, &seq); err != nil {
				return err
			}
		}
		_, err = tx.ExecContext(ctx, `UPDATE archive_state SET backfill_done = ?, backfill_conversation = ?, backfill_seq = ?
			WHERE id = 1`, done, conv, seq)
		return err
	})
	if err != nil {
		return 0, false, err
	}
	return n, done, nil
}

// ReadOutbox returns the oldest outbox entries, at most limit (at least
// 1).
func (s *Store) ReadOutbox(ctx context.Context, limit int) ([]storage.OutboxEntry, error) {
	const op = "read outbox"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT id, conversation_id, seq, enqueued_at FROM archive_outbox ORDER BY id LIMIT ?`,
		max(limit, 1))
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	var out []storage.OutboxEntry
	for rows.Next() {
		var (
			e       storage.OutboxEntry
			seq, at int64
		)
		if err := rows.Scan(&e.ID, &e.Key.ConversationID, &seq, &at); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		e.Key.Seq = u64(seq)
		e.EnqueuedAt = fromMS(at)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}

// LoadMessages returns the current state of the named messages, each
// once, with their indexed text: one primary-key lookup per key, up to
// maxLoadBatch keys a query.
func (s *Store) LoadMessages(ctx context.Context, keys []storage.MessageKey) ([]storage.ArchiveRecord, error) {
	const op = "load messages"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	seen := make(map[storage.MessageKey]struct{}, len(keys))
	uniq := make([]storage.MessageKey, 0, len(keys))
	for _, k := range keys {
		if _, ok := seen[k]; !ok {
			seen[k] = struct{}{}
			uniq = append(uniq, k)
		}
	}
	out := make([]storage.ArchiveRecord, 0, len(uniq))
	for len(uniq) > 0 {
		chunk := uniq[:min(len(uniq), maxLoadBatch)]
		uniq = uniq[len(chunk):]
		var q strings.Builder
		q.WriteString(`SELECT ` + messageColumnsM + `, coalesce(f.text, '') FROM messages m
			LEFT JOIN message_search f ON f.rowid = nullif(m.search_rowid, 0)
			WHERE (m.conversation_id, m.seq) IN (VALUES `)
		args := make([]any, 0, 2*len(chunk))
		for i, k := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?)")
			args = append(args, k.ConversationID, i64(k.Seq))
		}
		q.WriteString(")")
		rows, err := s.r.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		for rows.Next() {
			var r storage.ArchiveRecord
			r.Message, err = scanMessage(scanFunc(func(dest ...any) error {
				return rows.Scan(append(dest, &r.SearchText)...)
			}))
			if err != nil {
				_ = rows.Close()
				return nil, s.fail(ctx, op, err)
			}
			out = append(out, r)
		}
		err = rows.Err()
		_ = rows.Close()
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
	}
	return out, nil
}

// AckOutbox deletes the outbox entries with these ids.
func (s *Store) AckOutbox(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		if err := s.check(ctx); err != nil {
			return s.fail(ctx, "ack outbox", err)
		}
		return nil
	}
	return s.write(ctx, "ack outbox", func(tx *sql.Tx) error {
		st, err := tx.PrepareContext(ctx, `DELETE FROM archive_outbox WHERE id = ?`)
		if err != nil {
			return err
		}
		defer func() { _ = st.Close() }()
		for _, id := range ids {
			if _, err := st.ExecContext(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
}

// OutboxLag returns how many entries wait and when the oldest was
// enqueued.
func (s *Store) OutboxLag(ctx context.Context) (int, time.Time, error) {
	const op = "outbox lag"
	if err := s.check(ctx); err != nil {
		return 0, time.Time{}, s.fail(ctx, op, err)
	}
	var (
		n      int64
		oldest sql.NullInt64
	)
	if err := s.r.QueryRowContext(ctx, `SELECT count(*), (SELECT enqueued_at FROM archive_outbox ORDER BY id LIMIT 1)
		FROM archive_outbox`).Scan(&n, &oldest); err != nil {
		return 0, time.Time{}, s.fail(ctx, op, err)
	}
	if !oldest.Valid {
		return int(n), time.Time{}, nil
	}
	return int(n), fromMS(oldest.Int64), nil
}

// AcquireLease takes or renews the lease with one conditional upsert on
// this process's clock. One process owns an embedded store, so the lease
// is held in practice; it is real all the same, for a second Store on
// the same file.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	var got bool
	err := s.write(ctx, "acquire lease", func(tx *sql.Tx) error {
		now := time.Now()
		var h string
		err := tx.QueryRowContext(ctx, `INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
			WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4
			RETURNING holder`, name, holder, ms(now.Add(ttl)), ms(now)).Scan(&h)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			return nil
		case err != nil:
			return err
		}
		got = true
		return nil
	})
	return got, err
}

// ReleaseLease deletes the lease if holder has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	return s.write(ctx, "release lease", func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM leases WHERE name = ? AND holder = ?`, name, holder)
		return err
	})
}
