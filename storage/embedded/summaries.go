package embedded

import (
	"context"
	"database/sql"

	"github.com/parley-im/parley/storage"
)

// listConversationsQuery is a user's conversation list in one query: the
// membership, the conversation, its newest message when the user can see
// it (seq >= joined_seq), the unread count (visible messages after
// last_read_seq that others sent, counted on the (conversation_id, seq)
// key) and, for a direct conversation, the peer (the user themself in a
// conversation with oneself). Below the conversation's archived_seq (the
// hot window) there are no rows to count: every seq there after the read
// mark counts, which is the same number, since sending raises the
// sender's read mark past their own messages.
const listConversationsQuery = `
SELECT c.id, c.kind, c.title, c.owner_id, c.last_seq, c.created_at, c.last_message_at,
	m.conversation_id, m.user_id, m.role, m.joined_seq, m.last_read_seq, m.joined_at,
	CASE WHEN c.kind = 1 THEN COALESCE(
		(SELECT p.user_id FROM members p WHERE p.conversation_id = c.id AND p.user_id <> m.user_id LIMIT 1),
		m.user_id) ELSE '' END,
	MAX(c.archived_seq - MAX(m.last_read_seq, m.joined_seq - 1), 0) + (SELECT COUNT(*) FROM messages x
		WHERE x.conversation_id = c.id AND x.seq > MAX(m.last_read_seq, m.joined_seq - 1, c.archived_seq)
		AND x.sender_id <> m.user_id),
	lm.conversation_id, lm.seq, lm.id, lm.sender_id, lm.sender_device_id, lm.client_msg_id,
	lm.kind, lm.body, lm.created_at, lm.recalled_at, lm.media_id
FROM members m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN messages lm ON lm.conversation_id = c.id AND lm.seq = c.last_seq AND c.last_seq >= m.joined_seq
WHERE m.user_id = ?
ORDER BY c.last_message_at DESC, c.id`

// ListConversations returns the user's conversations, most recent activity
// first (ties by id), each with the user's membership, the newest message
// the user can see (nil when none), the unread count and, for a direct
// conversation, the peer. An unknown user has none.
func (s *Store) ListConversations(ctx context.Context, userID string) ([]storage.ConversationSummary, error) {
	const op = "list conversations"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.r.QueryContext(ctx, listConversationsQuery, userID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	var out []storage.ConversationSummary
	for rows.Next() {
		sum, err := scanSummary(rows)
		if err != nil {
			return nil, s.fail(ctx, op, err)
		}
		out = append(out, sum)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}

func scanSummary(rows *sql.Rows) (storage.ConversationSummary, error) {
	var (
		sum                                     storage.ConversationSummary
		kind, last, created, lastAt             int64
		role, joined, read, joinedAt, unread    int64
		lmConv, lmID, lmSender, lmDevice, lmCMI sql.NullString
		lmMedia                                 sql.NullString
		lmSeq, lmKind, lmCreated, lmRecalled    sql.NullInt64
		lmBody                                  []byte
	)
	c, m := &sum.Conversation, &sum.Self
	if err := rows.Scan(&c.ID, &kind, &c.Title, &c.OwnerID, &last, &created, &lastAt,
		&m.ConversationID, &m.UserID, &role, &joined, &read, &joinedAt,
		&sum.PeerID, &unread,
		&lmConv, &lmSeq, &lmID, &lmSender, &lmDevice, &lmCMI, &lmKind, &lmBody, &lmCreated, &lmRecalled, &lmMedia,
	); err != nil {
		return storage.ConversationSummary{}, err
	}
	c.Kind = storage.ConversationKind(kind)
	c.LastSeq = u64(last)
	c.CreatedAt = fromMS(created)
	c.LastMessageAt = fromMS(lastAt)
	m.Role = storage.Role(role)
	m.JoinedSeq = u64(joined)
	m.LastReadSeq = u64(read)
	m.JoinedAt = fromMS(joinedAt)
	sum.Unread = u64(unread)
	if lmSeq.Valid {
		sum.LastMessage = &storage.Message{
			ID:             lmID.String,
			ConversationID: lmConv.String,
			Seq:            u64(lmSeq.Int64),
			SenderID:       lmSender.String,
			SenderDeviceID: lmDevice.String,
			ClientMsgID:    lmCMI.String,
			Kind:           storage.MessageKind(lmKind.Int64),
			Body:           body(lmBody),
			MediaID:        lmMedia.String,
			CreatedAt:      fromMS(lmCreated.Int64),
			RecalledAt:     fromMS(lmRecalled.Int64),
		}
	}
	return sum, nil
}
