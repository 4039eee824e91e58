package postgres

import (
	"cmp"
	"context"
	"slices"

	"github.com/parley-im/parley/storage"
)

// backlogsQuery lists, in one query, every conversation of a user with
// what a device already has there, max(cursor, joined_seq-1), and the
// conversation's newest seq. It walks the user's memberships
// (members_user_id) and probes each conversation and cursor by primary
// key; the sort is over that user's conversations only. LEAST keeps After
// from passing last_seq even if a cursor ever did (SaveCursors clamps).
const backlogsQuery = `
SELECT c.id, LEAST(GREATEST(COALESCE(cur.seq, 0), m.joined_seq - 1), c.last_seq) AS after, c.last_seq
FROM members m
JOIN conversations c ON c.id = m.conversation_id
LEFT JOIN cursors cur ON cur.device_id = $1 AND cur.conversation_id = m.conversation_id
WHERE m.user_id = $2
ORDER BY c.last_message_at DESC, c.id`

// saveCursorsQuery raises cursors in one statement: only for a known
// device and conversation, never past the conversation's last seq, never
// down.
const saveCursorsQuery = `
INSERT INTO cursors (device_id, conversation_id, seq)
SELECT v.d, c.id, LEAST(v.s, c.last_seq)
FROM unnest($1::text[], $2::text[], $3::bigint[]) WITH ORDINALITY AS v (d, c, s, i)
JOIN conversations c ON c.id = v.c
WHERE EXISTS (SELECT 1 FROM devices d WHERE d.id = v.d)
ORDER BY v.i
ON CONFLICT (device_id, conversation_id) DO UPDATE SET seq = excluded.seq
WHERE excluded.seq > cursors.seq`

// SaveCursors raises each device's cursor in its conversation to
// min(Seq, the conversation's last seq); a cursor never goes down. Entries
// naming an unknown device or conversation are skipped, so one bad ack
// cannot fail a batch of others. All entries commit in one statement,
// written in (device, conversation) order so that concurrent batches
// cannot deadlock.
func (s *Store) SaveCursors(ctx context.Context, cursors []storage.Cursor) error {
	const op = "save cursors"
	if err := s.check(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	if len(cursors) == 0 {
		return nil
	}
	// One row per (device, conversation), with the highest seq: an
	// upsert may not touch a row twice.
	cs := slices.Clone(cursors)
	slices.SortFunc(cs, func(a, b storage.Cursor) int {
		return cmp.Or(cmp.Compare(a.DeviceID, b.DeviceID), cmp.Compare(a.ConversationID, b.ConversationID),
			cmp.Compare(b.Seq, a.Seq))
	})
	cs = slices.CompactFunc(cs, func(a, b storage.Cursor) bool {
		return a.DeviceID == b.DeviceID && a.ConversationID == b.ConversationID
	})
	devs := make([]string, len(cs))
	convs := make([]string, len(cs))
	seqs := make([]int64, len(cs))
	for i, c := range cs {
		devs[i], convs[i], seqs[i] = c.DeviceID, c.ConversationID, i64(c.Seq)
	}
	_, err := s.pool.Exec(ctx, saveCursorsQuery, devs, convs, seqs)
	return s.fail(ctx, op, err)
}

// Backlogs returns one entry for every conversation of userID: what
// deviceID already has there, honouring join points, and the newest seq;
// caught-up and empty conversations included. Most recent activity first.
func (s *Store) Backlogs(ctx context.Context, userID, deviceID string) ([]storage.Backlog, error) {
	const op = "backlogs"
	if err := s.check(ctx); err != nil {
		return nil, s.fail(ctx, op, err)
	}
	rows, err := s.pool.Query(ctx, backlogsQuery, deviceID, userID)
	if err != nil {
		return nil, s.fail(ctx, op, err)
	}
	var out []storage.Backlog
	for rows.Next() {
		var (
			b           storage.Backlog
			after, last int64
		)
		if err := rows.Scan(&b.ConversationID, &after, &last); err != nil {
			rows.Close()
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
