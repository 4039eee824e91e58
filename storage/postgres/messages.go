package postgres

import (
	"context"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"github.com/parley-im/parley/storage"
)

// maxPage caps a history page.
const maxPage = 10_000

// AppendMessages commits msgs in one transaction, as storage.MessageStore
// specifies. Per message, in slice order: a repeat of an earlier message of
// the batch gets that message's result (with Duplicate set when it was
// committed); a key committed before gets the original and Duplicate (even
// when the sender has left since); a sender who is not a member (or a
// conversation that does not exist) gets Err == storage.ErrNotMember;
// anything else gets the next seq.
//
// The batch locks its conversations' rows in id order and reads their
// heads and the senders' memberships in one round trip, assigns seqs in
// memory, and writes the messages, heads and senders' read marks under a
// savepoint in a second: four round trips with BEGIN and COMMIT, whatever
// the batch size. It assumes no key was committed before (a retry of a
// committed message is rare): when the insert hits a committed key, it
// rolls back to the savepoint, reads the committed keys (the conversation
// locks keep anything new from committing meanwhile), reassigns seqs and
// writes again. Concurrent batches (from any process) that share a
// conversation run one after the other, so seqs have no gaps. Any other
// error rolls the whole batch back. An empty batch returns no results.
func (s *Store) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	const op = "append messages"
	if len(msgs) == 0 {
		if err := s.check(ctx); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		return nil, nil
	}
	var results []storage.AppendResult
	err := s.tx(ctx, op, func(tx pgx.Tx) error {
		var err error
		results, err = appendBatch(ctx, tx, msgs)
		return err
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// GetMessage returns the message at (conversationID, seq), or an error
// wrapping storage.ErrNotFound. A recalled message has a nil Body.
func (s *Store) GetMessage(ctx context.Context, conversationID string, seq uint64) (storage.Message, error) {
	const op = "get message"
	if err := s.check(ctx); err != nil {
		return storage.Message{}, s.fail(ctx, op, err)
	}
	m, err := scanMessage(s.pool.QueryRow(ctx,
		`SELECT `+messageColumns+` FROM messages WHERE conversation_id = $1 AND seq = $2`,
		conversationID, i64(seq)))
	if err != nil {
		return storage.Message{}, s.fail(ctx, op, err)
	}
	return m, nil
}

// RecallMessage erases the body of the message at seq, stamps its
// RecalledAt with notice.CreatedAt and appends notice to the same
// conversation (notice.ConversationID is ignored), in one transaction.
// Errors wrap storage.ErrNotFound (no such message) or storage.ErrConflict
// (already recalled, or a system message).
func (s *Store) RecallMessage(ctx context.Context, conversationID string, seq uint64, notice storage.NewMessage) (storage.Message, storage.Message, error) {
	var recalled, committed storage.Message
	notice.ConversationID = conversationID
	notice.CreatedAt = stamp(notice.CreatedAt)
	err := s.tx(ctx, "recall message", func(tx pgx.Tx) error {
		// The conversation's lock first, as every append takes it, then
		// the message's.
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE`,
			conversationID).Scan(&one); err != nil {
			return err
		}
		var err error
		recalled, err = scanMessage(tx.QueryRow(ctx,
			`SELECT `+messageColumns+` FROM messages WHERE conversation_id = $1 AND seq = $2 FOR UPDATE`,
			conversationID, i64(seq)))
		if err != nil {
			return err
		}
		if recalled.Kind == storage.MessageSystem || !recalled.RecalledAt.IsZero() {
			return storage.ErrConflict
		}
		// The message's words leave the search index with its body.
		if _, err := tx.Exec(ctx, `DELETE FROM message_search WHERE conversation_id = $1 AND seq = $2`,
			conversationID, i64(seq)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx,
			`UPDATE messages SET body = NULL, recalled_at = $1 WHERE conversation_id = $2 AND seq = $3`,
			notice.CreatedAt, conversationID, i64(seq)); err != nil {
			return err
		}
		recalled.Body = nil
		recalled.RecalledAt = notice.CreatedAt
		if committed, err = appendNotice(ctx, tx, notice, false); err != nil {
			return err
		}
		return raiseRead(ctx, tx, conversationID, committed.SenderID, committed.Seq)
	})
	if err != nil {
		return storage.Message{}, storage.Message{}, err
	}
	return recalled, committed, nil
}

// History returns a page of a conversation in ascending seq order, and
// whether more messages lie beyond it in q.Direction (at or above
// q.MinSeq, and above the conversation's ArchivedSeq: what lies below
// is the archive's). Before with Anchor 0 is the newest page. A Limit below 1 is
// taken as 1, above 10,000 as 10,000. An unknown conversation has an empty
// history. The page is one range scan of the primary key.
func (s *Store) History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	const op = "history"
	if err := s.check(ctx); err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	limit := min(max(q.Limit, 1), maxPage)
	var query string
	anchor := i64(q.Anchor)
	switch q.Direction {
	case storage.Before:
		if q.Anchor == 0 {
			anchor = math.MaxInt64
		}
		query = `SELECT ` + messageColumns + ` FROM messages
			WHERE conversation_id = $1 AND seq < $2 AND seq >= $3 AND seq > (SELECT archived_seq FROM conversations WHERE id = $1)
			ORDER BY seq DESC LIMIT $4`
	case storage.After:
		query = `SELECT ` + messageColumns + ` FROM messages
			WHERE conversation_id = $1 AND seq > $2 AND seq >= $3 AND seq > (SELECT archived_seq FROM conversations WHERE id = $1)
			ORDER BY seq ASC LIMIT $4`
	default:
		return nil, false, fmt.Errorf("postgres: %s: invalid direction %d", op, q.Direction)
	}
	// One row past the page tells whether there is more.
	rows, err := s.pool.Query(ctx, query, q.ConversationID, anchor, i64(q.MinSeq), limit+1)
	if err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	msgs := make([]storage.Message, 0, min(limit+1, 256))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return nil, false, s.fail(ctx, op, err)
		}
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	more := len(msgs) > limit
	if more {
		msgs = msgs[:limit]
	}
	if q.Direction == storage.Before {
		for i, j := 0, len(msgs)-1; i < j; i, j = i+1, j-1 {
			msgs[i], msgs[j] = msgs[j], msgs[i]
		}
	}
	return msgs, more, nil
}
