package embedded

import (
	"context"
	"strings"

	"github.com/parley-im/parley/storage"
)

// searchColumns are messageColumns read through the alias m, then the
// indexed text.
// messageColumnsM is messageColumns of the alias m.
const messageColumnsM = `m.conversation_id, m.seq, m.id, m.sender_id, m.sender_device_id, m.client_msg_id, m.kind, m.body, m.created_at, m.recalled_at, m.media_id`

const searchColumns = messageColumnsM + `, f.text`

// SearchMessages finds messages by their words, as storage.SearchStore
// specifies. The FTS5 index yields the matches newest first (its rowids
// are creation times, see nextSearchRowid), so a page costs the matches
// read until it is full, not every match of a common word; the members
// join keeps the user's conversations from their join point on. Messages
// created in the same millisecond come newest-committed first. A Limit
// below 1 is taken as 1, above 10,000 as 10,000; no terms find nothing.
func (s *Store) SearchMessages(ctx context.Context, q storage.SearchQuery) ([]storage.SearchHit, bool, error) {
	const op = "search messages"
	if err := s.check(ctx); err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	if len(q.Terms) == 0 {
		return nil, false, nil
	}
	limit := min(max(q.Limit, 1), maxPage)
	var b strings.Builder
	b.WriteString(`SELECT ` + searchColumns + ` FROM message_search f
		JOIN messages m ON m.conversation_id = f.conversation_id AND m.seq = f.seq
		JOIN members mb ON mb.conversation_id = m.conversation_id AND mb.user_id = ?
		WHERE message_search MATCH ? AND m.seq >= mb.joined_seq AND m.recalled_at = 0`)
	args := []any{q.UserID, matchExpr(q.Terms)}
	if q.ConversationID != "" {
		b.WriteString(` AND f.conversation_id = ?`)
		args = append(args, q.ConversationID)
	}
	// Time bounds are rowid bounds, which FTS5 applies inside the index.
	if !q.From.IsZero() {
		b.WriteString(` AND f.rowid >= ?`)
		args = append(args, max(q.From.UnixMilli(), 0)<<searchSlotBits)
	}
	if !q.To.IsZero() {
		b.WriteString(` AND f.rowid < ?`)
		args = append(args, max(q.To.UnixMilli(), 0)<<searchSlotBits)
	}
	if c := q.After; c != nil {
		// After the cursor's own row; if that was recalled since, after
		// everything of its millisecond (the rest of which is then
		// skipped: a rare loss, on a page boundary, for a recalled hit).
		b.WriteString(` AND f.rowid < COALESCE(
			(SELECT NULLIF(search_rowid, 0) FROM messages WHERE conversation_id = ? AND seq = ?), ?)`)
		args = append(args, c.ConversationID, i64(c.Seq), max(c.CreatedAt.UnixMilli(), 0)<<searchSlotBits)
	}
	b.WriteString(` ORDER BY f.rowid DESC LIMIT ?`)
	// One row past the page tells whether there is more.
	args = append(args, limit+1)

	rows, err := s.r.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	defer func() { _ = rows.Close() }()
	var hits []storage.SearchHit
	for rows.Next() {
		var h storage.SearchHit
		m, err := scanMessage(scanFunc(func(dest ...any) error {
			return rows.Scan(append(dest, &h.Text)...)
		}))
		if err != nil {
			return nil, false, s.fail(ctx, op, err)
		}
		h.Message = m
		hits = append(hits, h)
	}
	if err := rows.Err(); err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	more := len(hits) > limit
	if more {
		hits = hits[:limit]
	}
	return hits, more, nil
}

// matchExpr builds an FTS5 query from terms: each a quoted string (so no
// FTS5 syntax can come from a user), all required, the last one a prefix.
// textsearch.Terms leaves only letters and digits in a term; the quotes
// are doubled anyway, as FTS5 strings escape them.
func matchExpr(terms []string) string {
	var b strings.Builder
	for i, t := range terms {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteByte('"')
		b.WriteString(strings.ReplaceAll(t, `"`, `""`))
		b.WriteByte('"')
	}
	b.WriteByte('*')
	return b.String()
}

// scanFunc adapts a function to scanner.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }
