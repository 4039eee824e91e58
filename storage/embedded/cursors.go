package embedded

import (
	"context"
	"database/sql"

	"github.com/parley-im/parley/storage"
)

// backlogsQuery finds, in one query, the conversations of a user in which a
// device lacks messages: the device has everything up to max(cursor,
// joined_seq-1) and the conversation is past that. It walks the user's
// memberships (members_user_id) and probes each conversation and cursor
// by primary key.
const backlogsQuery = `
SELECT c.id, MAX(COALESCE(cur.seq, 0), m.joined_seq - 1) AS after, c.last_seq
FROM members m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN cursors cur ON cur.device_id = ? AND cur.conversation_id = m.conversation_id
WHERE m.user_id = ? AND c.last_seq > MAX(COALESCE(cur.seq, 0), m.joined_seq - 1)
ORDER BY c.last_message_at DESC, c.id`

// SaveCursors raises each device's cursor in its conversation to
// min(Seq, the conversation's last seq); a cursor never goes down. Entries
// naming an unknown device or conversation are skipped, so one bad ack
// cannot fail a batch of others. All entries commit in one transaction.
func (s *Store) SaveCursors(ctx context.Context, cursors []storage.Cursor) error {
	if len(cursors) == 0 {
		if err := s.check(ctx); err != nil {
			return s.fail(ctx, "save cursors", err)
		}
		return nil
	}
	return s.write(ctx, "save cursors", func(tx *sql.Tx) error {
		st := tx.StmtContext(ctx, s.ws.saveCursor)
		// As in appender: no per-statement cancellation watcher; ctx is
		// checked between entries.
		sctx := context.WithoutCancel(ctx)
		for _, c := range cursors {
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, err := st.ExecContext(sctx, c.DeviceID, c.ConversationID, i64(c.Seq)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Backlogs returns the conversations of userID in which deviceID has not
// acknowledged the newest message, honouring join points, most recent
// activity first. Conversations the device is caught up in are omitted.
func (s *Store) Backlogs(ctx context.Context, userID, deviceID string) ([]storage.Backlog, error) {
	const op = "backlogs"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.r.QueryContext(ctx, backlogsQuery, deviceID, userID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	var out []storage.Backlog
	for rows.Next() {
		var (
			b           storage.Backlog
			after, last int64
		)
		if err := rows.Scan(&b.ConversationID, &after, &last); err != nil {
			return nil, s.fail(ctx, op, err)
		}
		b.After, b.LastSeq = u64(after), u64(last)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	return out, nil
}
