package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/textsearch"
)

// fewMatches is how many matches in the whole index SearchMessages
// collects and sorts rather than walking the search order for a page.
const fewMatches = 200

// SearchMessages finds messages by their words, as storage.SearchStore
// specifies; the members join keeps the user's conversations from their
// join point on. A Limit below 1 is taken as 1, above 10,000 as 10,000;
// no terms find nothing.
func (s *Store) SearchMessages(ctx context.Context, q storage.SearchQuery) ([]storage.SearchHit, bool, error) {
	const op = "search messages"
	if err := s.check(ctx); err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	if len(q.Terms) == 0 {
		return nil, false, nil
	}
	limit := min(max(q.Limit, 1), maxPage)
	query := tsquery(q.Terms)
	// Which plan: with few matches in the whole index (fewer than
	// fewMatches), collect them through the GIN index and sort them; with
	// many, walk the search order index and stop after a page. The
	// planner cannot tell the two apart (the last term is a prefix, which
	// its statistics do not cover) and always walked: 15-25 ms over
	// 100,000 messages for a rare word or none, which the index answers
	// in 0.3-0.6 ms. The probe costs a common word about 5 ms in turn
	// (BenchmarkSearch), a better worst case.
	var few bool
	if err := s.pool.QueryRow(ctx, `SELECT count(*) < $2 FROM (
			SELECT 1 FROM message_search WHERE words @@ $1::tsquery LIMIT $2) x`, query, fewMatches).Scan(&few); err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	source := `message_search f`
	if few {
		// MATERIALIZED keeps the planner from folding it back into the
		// walk.
		source = `(WITH matched AS MATERIALIZED (
			SELECT conversation_id, seq, created_at, text, words FROM message_search WHERE words @@ $2::tsquery)
			SELECT * FROM matched) f`
	}
	var b strings.Builder
	b.WriteString(`SELECT ` + messageColumnsM + `, f.text FROM ` + source + `
		JOIN members mb ON mb.conversation_id = f.conversation_id AND mb.user_id = $1
		JOIN messages m ON m.conversation_id = f.conversation_id AND m.seq = f.seq
		WHERE f.words @@ $2::tsquery AND f.seq >= mb.joined_seq`)
	args := []any{q.UserID, query}
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if q.ConversationID != "" {
		b.WriteString(` AND f.conversation_id = ` + arg(q.ConversationID))
	}
	if !q.From.IsZero() {
		b.WriteString(` AND f.created_at >= ` + arg(q.From))
	}
	if !q.To.IsZero() {
		b.WriteString(` AND f.created_at < ` + arg(q.To))
	}
	if c := q.After; c != nil {
		b.WriteString(` AND (f.created_at, f.conversation_id, f.seq) < (` +
			arg(c.CreatedAt) + `, ` + arg(c.ConversationID) + `, ` + arg(i64(c.Seq)) + `)`)
	}
	// One row past the page tells whether there is more.
	b.WriteString(` ORDER BY f.created_at DESC, f.conversation_id DESC, f.seq DESC LIMIT ` + arg(limit+1))

	rows, err := s.pool.Query(ctx, b.String(), args...)
	if err != nil {
		return nil, false, s.fail(ctx, op, err)
	}
	defer rows.Close()
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

// lexemes is text's distinct words as insertSearchQuery takes them:
// folded, clipped (textsearch.Clip), space-separated.
func lexemes(text string) string {
	words := textsearch.Words(text)
	seen := make(map[string]struct{}, len(words))
	var b strings.Builder
	for _, w := range words {
		f := textsearch.Clip(w.Folded)
		if has(seen, f) {
			continue
		}
		seen[f] = struct{}{}
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(f)
	}
	return b.String()
}

// tsquery is the tsquery text for terms: each a quoted, clipped lexeme (so no
// tsquery syntax can come from a user), all required, the last one a
// prefix. textsearch.Terms leaves only letters and digits in a term; the
// quote and backslash escapes are applied anyway.
func tsquery(terms []string) string {
	var b strings.Builder
	for i, t := range terms {
		if i > 0 {
			b.WriteString(" & ")
		}
		b.WriteByte('\'')
		b.WriteString(strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(textsearch.Clip(t)))
		b.WriteByte('\'')
	}
	b.WriteString(":*")
	return b.String()
}

// scanFunc adapts a function to pgx.Row.
type scanFunc func(dest ...any) error

func (f scanFunc) Scan(dest ...any) error { return f(dest...) }
