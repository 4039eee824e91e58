package embedded

import (
	"context"
	"database/sql"

	"github.com/parley-im/parley/storage"
)

// backlogsQuery lists, in one query, every conversation of a user with
// what a device already has there, max(cursor, joined_seq-1), and the
// conversation's newest seq. It walks the user's memberships
// (members_user_id) and probes each conversation and cursor by primary
// key; the sort is over that user's conversations only. MIN keeps After
// from passing last_seq even if a cursor ever did (SaveCursors clamps).
const backlogsQuery = `
SELECT c.id, MIN(MAX(COALESCE(cur.seq, 0), m.joined_seq - 1), c.last_seq) AS after, c.last_seq
FROM members m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN cursors cur ON cur.device_id = ? AND cur.conversation_id = m.conversation_id
WHERE m.user_id = ?
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

// Backlogs returns one entry for every conversation of userID: what
// deviceID already has there, honouring join points, and the newest seq;
// caught-up and empty conversations included. Most recent activity first.
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
