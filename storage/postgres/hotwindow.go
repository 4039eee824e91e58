package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

var _ storage.HotWindow = (*Store)(nil)


const (
	// trimCandidatesQuery finds up to $2 conversations whose first message
	// above the boundary is older than $1, is not their newest, and waits
	// for no outbox entry: the ones a trim will move. One primary-key probe
	// per conversation (the first message above the boundary), one outbox
	// index probe per candidate.
	trimCandidatesQuery = `SELECT c.id FROM conversations c
		CROSS JOIN LATERAL (
			SELECT m.seq, m.created_at FROM messages m
			WHERE m.conversation_id = c.id AND m.seq > c.archived_seq
			ORDER BY m.seq LIMIT 1) f
		WHERE f.created_at < $1 AND f.seq < c.last_seq
		AND NOT EXISTS (SELECT 1 FROM archive_outbox o WHERE o.conversation_id = c.id AND o.seq = f.seq)
		LIMIT $2`

	// trimStopQuery is the first seq above the boundary $2 that must stay:
	// created at or after $3 (the cutoff), or waiting for the archive. It
	// walks the primary key up from the boundary and stops at the first
	// such message; NULL when every message above the boundary may go.
	trimStopQuery = `SELECT least(
		(SELECT min(seq) FROM messages WHERE conversation_id = $1 AND seq > $2 AND created_at >= $3),
		(SELECT min(seq) FROM archive_outbox WHERE conversation_id = $1 AND seq > $2))`
)

// TrimArchived moves conversations' boundaries as storage.HotWindow
// specifies, one transaction per conversation. Each holds the
// conversation's row lock, which every append and recall takes too, so no
// message of it changes or arrives between the checks and the delete.
func (s *Store) TrimArchived(ctx context.Context, cutoff time.Time, limit int) (int, error) {
	const op = "trim archived"
	if err := s.check(ctx); err != nil {
		return 0, s.fail(ctx, op, err)
	}
	limit = max(limit, 1)
	var enabled, backfilled bool
	if err := s.pool.QueryRow(ctx, `SELECT enabled, backfill_done FROM archive_state`).Scan(&enabled, &backfilled); err != nil {
		return 0, s.fail(ctx, op, err)
	}
	if !enabled {
		return 0, s.fail(ctx, op, storage.ErrArchiveNotEnabled)
	}
	if !backfilled {
		return 0, nil
	}
	rows, err := s.pool.Query(ctx, trimCandidatesQuery, cutoff, limit)
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	moved := 0
	for _, id := range ids {
		if moved >= limit {
			break
		}
		var n int
		err := s.tx(ctx, op, func(tx pgx.Tx) error {
			var err error
			n, err = trimConversation(ctx, tx, id, cutoff, limit-moved)
			return err
		})
		if err != nil {
			return moved, err
		}
		moved += n
	}
	return moved, nil
}

// trimConversation moves one conversation's boundary by up to limit
// messages and returns by how many.
func trimConversation(ctx context.Context, tx pgx.Tx, id string, cutoff time.Time, limit int) (int, error) {
	var from, last int64
	if err := tx.QueryRow(ctx, `SELECT archived_seq, last_seq FROM conversations WHERE id = $1 FOR UPDATE`, id).
		Scan(&from, &last); err != nil {
		return 0, err
	}
	var stop *int64
	if err := tx.QueryRow(ctx, trimStopQuery, id, from, cutoff).Scan(&stop); err != nil {
		return 0, err
	}
	// The newest message always stays.
	to := min(last-1, from+int64(limit))
	if stop != nil {
		to = min(to, *stop-1)
	}
	if to <= from {
		return 0, nil
	}
	// Explicitly, for the media messages that keep their rows; the others'
	// words would go with them (ON DELETE CASCADE).
	if _, err := tx.Exec(ctx, `DELETE FROM message_search WHERE conversation_id = $1 AND seq > $2 AND seq <= $3`,
		id, from, to); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `DELETE FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
		AND (media_id = '' OR recalled_at IS NOT NULL)`, id, from, to); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `UPDATE conversations SET archived_seq = $2 WHERE id = $1`, id, to); err != nil {
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
	err := s.pool.QueryRow(ctx, `SELECT archived_seq FROM conversations WHERE id = $1`, conversationID).Scan(&seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, s.fail(ctx, op, err)
	}
	return u64(seq), nil
}

// ArchivedRanges returns the archived history userID may read, from the
// user's memberships (members_user_id) and their conversations' rows.
func (s *Store) ArchivedRanges(ctx context.Context, userID, conversationID string) ([]storage.ArchivedRange, error) {
	const op = "archived ranges"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.pool.Query(ctx, `SELECT c.id, greatest(mb.joined_seq, 1), c.archived_seq
		FROM members mb JOIN conversations c ON c.id = mb.conversation_id
		WHERE mb.user_id = $1 AND ($2 = '' OR mb.conversation_id = $2)
		AND c.archived_seq >= greatest(mb.joined_seq, 1)
		ORDER BY c.id`, userID, conversationID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.ArchivedRange, error) {
		var (
			r        storage.ArchivedRange
			from, to int64
		)
		err := row.Scan(&r.ConversationID, &from, &to)
		r.FromSeq, r.ToSeq = u64(from), u64(to)
		return r, err
	})
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}
