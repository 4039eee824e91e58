package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"math"

	"github.com/parley-im/parley/storage"
)

// maxPage caps a history page.
const maxPage = 10_000

// dupKey is a message's idempotency key.
type dupKey struct {
	conversationID, senderID, clientMsgID string
}

// AppendMessages commits msgs in one transaction, as storage.MessageStore
// specifies. Per message, in slice order: a repeat of an earlier message of
// the batch gets that message's result (with Duplicate set when it was
// committed); a key committed before gets the original and Duplicate (even
// when the sender has left since); a sender who is not a member (or a
// conversation that does not exist) gets Err == storage.ErrNotMember;
// anything else gets the next seq. Each
// conversation's head and each sender's last_read_seq are written once per
// batch. Any other error rolls the whole batch back. An empty batch returns
// no results.
func (s *Store) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	const op = "append messages"
	if len(msgs) == 0 {
		if err := s.check(ctx); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		return nil, nil
	}
	results := make([]storage.AppendResult, len(msgs))
	err := s.write(ctx, op, func(tx *sql.Tx) error {
		a := s.appender(ctx, tx)
		sctx := context.WithoutCancel(ctx) // see appender
		first := make(map[dupKey]int)
		for i, m := range msgs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if m.ClientMsgID != "" {
				k := dupKey{m.ConversationID, m.SenderID, m.ClientMsgID}
				if j, ok := first[k]; ok {
					results[i] = results[j]
					results[i].Duplicate = results[j].Err == nil
					continue
				}
				first[k] = i
			}
			ok, err := a.member(sctx, m.ConversationID, m.SenderID)
			if err != nil {
				return err
			}
			if !ok {
				// A sender who has left since still gets their original
				// back.
				orig, found, err := a.duplicate(sctx, m)
				switch {
				case err != nil:
					return err
				case found:
					// With the current membership version, as any
					// duplicate (storage.Message.MembersSeq).
					c, err := a.conv(sctx, m.ConversationID)
					if err != nil {
						return err
					}
					orig.MembersSeq = c.membersSeq
					results[i] = storage.AppendResult{Message: orig, Duplicate: true}
				default:
					results[i] = storage.AppendResult{Err: storage.ErrNotMember}
				}
				continue
			}
			msg, inserted, err := a.append(sctx, m)
			if err != nil {
				return fmt.Errorf("message %s: %w", m.ID, err)
			}
			results[i] = storage.AppendResult{Message: msg, Duplicate: !inserted}
		}
		return a.flush(sctx)
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
	m, err := scanMessage(s.r.QueryRowContext(ctx,
		`SELECT `+messageColumns+` FROM messages WHERE conversation_id = ? AND seq = ?`,
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
	err := s.write(ctx, "recall message", func(tx *sql.Tx) error {
		var err error
		recalled, err = scanMessage(tx.QueryRowContext(ctx,
			`SELECT `+messageColumns+` FROM messages WHERE conversation_id = ? AND seq = ?`,
			conversationID, i64(seq)))
		if err != nil {
			return err
		}
		if recalled.Kind == storage.MessageSystem || !recalled.RecalledAt.IsZero() {
			return storage.ErrConflict
		}
		// The message's words leave the search index with its body
		// (secure-delete: from the index itself, see migration 0004).
		if _, err := tx.ExecContext(ctx,
			`DELETE FROM message_search WHERE rowid = (
				SELECT search_rowid FROM messages WHERE conversation_id = ? AND seq = ? AND search_rowid <> 0)`,
			conversationID, i64(seq)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx,
			`UPDATE messages SET body = NULL, recalled_at = ?, search_rowid = 0 WHERE conversation_id = ? AND seq = ?`,
			ms(notice.CreatedAt), conversationID, i64(seq)); err != nil {
			return err
		}
		recalled.Body = nil
		recalled.RecalledAt = notice.CreatedAt
		a := s.appender(ctx, tx)
		if committed, err = a.notice(ctx, notice); err != nil {
			return err
		}
		return a.flush(ctx)
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
// history.
func (s *Store) History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	const op = "history"
	if err := s.check(ctx); err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	// The cap keeps limit+1 from overflowing; a page that large is a
	// caller's bug, and has_more stays truthful.
	limit := min(max(q.Limit, 1), maxPage)
	var query string
	anchor := i64(q.Anchor)
	switch q.Direction {
	case storage.Before:
		if q.Anchor == 0 {
			anchor = math.MaxInt64
		}
		query = `SELECT ` + messageColumns + ` FROM messages
			WHERE conversation_id = ?1 AND seq < ?2 AND seq >= ?3 AND seq > (SELECT archived_seq FROM conversations WHERE id = ?1)
			ORDER BY seq DESC LIMIT ?4`
	case storage.After:
		query = `SELECT ` + messageColumns + ` FROM messages
			WHERE conversation_id = ?1 AND seq > ?2 AND seq >= ?3 AND seq > (SELECT archived_seq FROM conversations WHERE id = ?1)
			ORDER BY seq ASC LIMIT ?4`
	default:
		return nil, false, fmt.Errorf("embedded: %s: invalid direction %d", op, q.Direction)
	}
	// One row past the page tells whether there is more.
	rows, err := s.r.QueryContext(ctx, query, q.ConversationID, anchor, i64(q.MinSeq), limit+1)
	if err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	msgs := make([]storage.Message, 0, min(limit+1, 256))
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
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
