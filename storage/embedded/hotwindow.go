package embedded

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/parley-im/parley/storage"
)

var _ storage.HotWindow = (*Store)(nil)


const (
	// trimCandidatesQuery finds up to ? conversations whose first message
	// above the boundary is older than the cutoff, is not their newest,
	// and waits for no outbox entry: the ones a trim will move. CROSS
	// JOIN makes SQLite walk conversations and probe each one's first
	// message by primary key; left to itself it scanned every message.
	trimCandidatesQuery = `SELECT c.id FROM conversations c
		CROSS JOIN messages f ON f.conversation_id = c.id AND f.seq = (
			SELECT min(seq) FROM messages WHERE conversation_id = c.id AND seq > c.archived_seq)
		WHERE f.created_at < ? AND f.seq < c.last_seq
		AND NOT EXISTS (SELECT 1 FROM archive_outbox o WHERE o.conversation_id = c.id AND o.seq = f.seq)
		LIMIT ?`

	// trimStopQuery is the first seq above the boundary that must stay:
	// created at or after the cutoff, or waiting for the archive; the
	// largest int64 when every message above the boundary may go.
	// (SQLite's two-argument min is NULL when either is: hence the
	// coalesce.)
	trimStopQuery = `SELECT min(
		coalesce((SELECT min(seq) FROM messages WHERE conversation_id = ?1 AND seq > ?2 AND created_at >= ?3), 9223372036854775807),
		coalesce((SELECT min(seq) FROM archive_outbox WHERE conversation_id = ?1 AND seq > ?2), 9223372036854775807))`
)

// trimPerTx is about how many messages one write transaction of
// TrimArchived passes: SQLite's write lock keeps every other writer out
// meanwhile, so it stays short (some milliseconds).
const trimPerTx = 1000

// TrimArchived moves conversations' boundaries as storage.HotWindow
// specifies, a few conversations per write transaction.
func (s *Store) TrimArchived(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	const op = "trim archived"
	if err := s.check(ctx); err != nil {
		return 0, s.fail(ctx, op, err)
	}
	limit = max(limit, 1)
	var enabled, backfilled bool
	if err := s.r.QueryRowContext(ctx, `SELECT enabled, backfill_done FROM archive_state WHERE id = 1`).
		Scan(&enabled, &backfilled); err != nil {
		return 0, s.fail(ctx, op, err)
	}
	if !enabled {
		return 0, s.fail(ctx, op, storage.ErrArchiveNotEnabled)
	}
	if !backfilled {
		return 0, nil
	}
	ids, err := s.trimCandidates(ctx, cutoff, limit)
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	moved := 0
	for len(ids) > 0 && moved < limit {
		// Several conversations a transaction, up to trimPerTx messages:
		// each commit syncs the WAL, and each flushes the search index.
		inTx, done := 0, 0
		err := s.write(ctx, op, func(tx *sql.Tx) error {
			for done < len(ids) && moved+inTx < limit && inTx < trimPerTx {
				n, err := trimConversation(ctx, tx, ids[done], cutoff, limit-moved-inTx)
				if err != nil {
					return err
				}
				inTx, done = inTx+n, done+1
			}
			return nil
		})
		if err != nil {
			return moved, err
		}
		moved, ids = moved+inTx, ids[done:]
	}
	return moved, nil
}

func (s *Store) trimCandidates(ctx context.Context, cutoff time.Time, limit int) ([]string, error) {
	rows, err := s.r.QueryContext(ctx, trimCandidatesQuery, ms(cutoff), limit)
	if err != nil {
		return nil, err
	}
	defer func() { _ = rows.Close() }()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// trimConversation moves one conversation's boundary by up to limit
// messages and returns by how many.
func trimConversation(ctx context.Context, tx *sql.Tx, id string, cutoff time.Time, limit int) (int, error) {
	var from, last int64
	if err := tx.QueryRowContext(ctx, `SELECT archived_seq, last_seq FROM conversations WHERE id = ?`, id).
		Scan(&from, &last); err != nil {
		return 0, err
	}
	var stop int64
	if err := tx.QueryRowContext(ctx, trimStopQuery, id, from, ms(cutoff)).Scan(&stop); err != nil {
		return 0, err
	}
	// The newest message always stays.
	to := min(last-1, from+int64(limit), stop-1)
	if to <= from {
		return 0, nil
	}
	// Their words leave the index first, for the media messages that keep
	// their rows too. Without secure-delete (migration 0004), which
	// rewrites index pages to erase a recalled message's words and here
	// cost half the trim: these words are not being erased, the archive
	// keeps them. The switch is part of this transaction, so no other
	// writer ever sees it off.
	for _, stmt := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 0)`, nil},
		{`DELETE FROM message_search WHERE rowid IN (
			SELECT search_rowid FROM messages WHERE conversation_id = ? AND seq > ? AND seq <= ? AND search_rowid <> 0)`,
			[]any{id, from, to}},
		{`INSERT INTO message_search (message_search, rank) VALUES ('secure-delete', 1)`, nil},
	} {
		if _, err := tx.ExecContext(ctx, stmt.sql, stmt.args...); err != nil {
			return 0, err
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM messages WHERE conversation_id = ? AND seq > ? AND seq <= ?
		AND (media_id = '' OR recalled_at <> 0)`, id, from, to); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE messages SET search_rowid = 0
		WHERE conversation_id = ? AND seq > ? AND seq <= ? AND search_rowid <> 0`, id, from, to); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `UPDATE conversations SET archived_seq = ? WHERE id = ?`, to, id); err != nil {
		return 0, err
	}
	return int(to - from), nil
}

// ArchivedSeq returns conversationID's boundary (0 when unknown).
func (s *Store) ArchivedSeq(ctx context.Context, conversationID string) (uint64, error) {
	const op = "archived seq"
	if err := s.check(ctx); err != nil {
		return 0, s.fail(ctx, op, err)
	}
	var seq int64
	err := s.r.QueryRowContext(ctx, `SELECT archived_seq FROM conversations WHERE id = ?`, conversationID).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	return u64(seq), nil
}

// ArchivedRanges returns the archived history userID may read.
func (s *Store) ArchivedRanges(ctx context.Context, userID, conversationID string) ([]storage.ArchivedRange, error) {
	const op = "archived ranges"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT c.id, max(mb.joined_seq, 1), c.archived_seq
		FROM members mb JOIN conversations c ON c.id = mb.conversation_id
		WHERE mb.user_id = ?1 AND (?2 = '' OR mb.conversation_id = ?2)
		AND c.archived_seq >= max(mb.joined_seq, 1)
		ORDER BY c.id`, userID, conversationID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	var out []storage.ArchivedRange
	for rows.Next() {
		var (
			r        storage.ArchivedRange
			from, to int64
		)
		if err := rows.Scan(&r.ConversationID, &from, &to); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		r.FromSeq, r.ToSeq = u64(from), u64(to)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}
