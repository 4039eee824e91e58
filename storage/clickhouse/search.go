package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/textsearch"
)

// defaultMaxQuerySize is ClickHouse's default max_query_size (256 KiB),
// which bounds the SQL text, literals included. A search over thousands
// of conversations carries their ids as literals and may need more.
const defaultMaxQuerySize = 256 << 10

// maxSearchLimit caps SearchQuery.Limit: a page is read whole.
const maxSearchLimit = 10_000

// createdMsExpr is a row's CreatedAt in Unix milliseconds: the precision
// of the search order and of storage.SearchCursor.
const createdMsExpr = `toUInt64(created_at) * 1000 + intDiv(created_at_nsec, 1000000)`

// createdNsExpr is a row's CreatedAt in Unix nanoseconds (UInt64 holds
// them up to 2554, past DateTime's 2106), for the From and To bounds.
const createdNsExpr = `(toUInt64(created_at) * 1000000000 + created_at_nsec)`

// SearchQuery selects the archived messages SearchMessages finds. The
// server builds it from a storage.SearchQuery: the terms, and the
// searcher's conversations with the part of each that only the archive
// holds and they may read.
type SearchQuery struct {
	// Terms are the words to find, as textsearch.Terms returns them:
	// each one folded word (lowercase, without diacritics, letters and
	// digits only). At least one. A message matches when its SearchText
	// holds every term as a word; the last also matches as a word prefix
	// ("hel" finds "hello").
	Terms []string
	// Scopes are the conversations to search, each once. Empty means no
	// hits (and no query).
	Scopes []SearchScope
	// From and To bound CreatedAt: From inclusive, To exclusive; zero
	// means unbounded.
	From, To time.Time
	// After, when set, is the position of the last hit of the previous
	// page: only hits strictly after it in the search order are returned.
	After *storage.SearchCursor
	// Limit is at least 1: at most Limit hits are returned (at most
	// 10,000: a larger Limit is taken as 10,000).
	Limit int
}

// SearchScope is one conversation to search: its messages with MinSeq <=
// seq <= MaxSeq (the searcher's join point and the archive boundary). A
// MinSeq of 0 is taken as 1; MinSeq above MaxSeq searches nothing there.
type SearchScope struct {
	ConversationID string
	MinSeq, MaxSeq uint64
}

// SearchMessages returns up to q.Limit archived messages matching q.Terms
// in q.Scopes and [q.From, q.To), and whether more lie beyond the page.
// The order is storage.SearchCursor's: CreatedAt descending at
// millisecond precision, then ConversationID descending, then Seq
// descending; q.After continues strictly after a hit's Cursor. Messages
// are taken in their latest state (what FINAL gives), so a recall
// archived after a message hides it, and a recalled message never
// matches. Hit.Message is what History returns for the message, Hit.Text
// its SearchText.
//
// Empty q.Scopes, or scopes and bounds that leave nothing to search,
// return no hits without a query. A Limit below 1, no terms, a term that
// is not one folded word, and a scope without a conversation or named
// twice are errors naming the field, and nothing is queried. Server
// trouble wraps storage.ErrUnavailable. Safe for concurrent use.
//
// Candidates come from a query that reads narrow columns only (a user's
// conversations are spread over most granules, so this reads the column
// for most of the table); the candidates' latest states are then read by
// key, the way History reads them, without FINAL (which on 18.16 costs
// several times more). Whole-word terms are matched with hasToken on servers with the
// search_tokens index (Features.TokenIndex), which serves it, and with
// position() over search_words elsewhere; a prefix with position().
func (db *DB) SearchMessages(ctx context.Context, q SearchQuery) ([]storage.SearchHit, bool, error) {
	const op = "search messages"
	if db.closed.Load() {
		return nil, false, errClosed(op)
	}
	if err := validateSearch(q); err != nil {
		return nil, false, err
	}
	var (
		ids   = make([]any, 0, len(q.Scopes))
		convs = make([]string, 0, len(q.Scopes))
		mins  = make([]uint64, 0, len(q.Scopes))
		maxs  = make([]uint64, 0, len(q.Scopes))
		size  = 2048
	)
	for _, s := range q.Scopes {
		lo := max(s.MinSeq, 1)
		if lo > s.MaxSeq {
			continue
		}
		ids = append(ids, s.ConversationID)
		convs = append(convs, s.ConversationID)
		mins = append(mins, lo)
		maxs = append(maxs, s.MaxSeq)
		// Two quoted literals (each byte escaped at worst) and two numbers.
		size += 2*(2*len(s.ConversationID)+4) + 2*22
	}
	if len(convs) == 0 {
		return nil, false, nil
	}

	if q.From.After(maxTime) || (!q.To.IsZero() && !q.To.After(minTime)) {
		return nil, false, nil
	}

	// Candidates come from a query without FINAL, which reads only the
	// narrow columns the condition and the order need, in parallel, and
	// may use the search_tokens index on servers that have one. Each is
	// then checked in its latest state (searchCheck, on the candidates'
	// keys only). A row of any state may make a candidate: a recalled or
	// edited message can be one that the check drops, and the search goes
	// on after it until the page is full or the candidates run out. It
	// never misses a hit: a message's latest state is a row, and
	// created_at is the same in all its states.
	limit := min(q.Limit, maxSearchLimit)
	var (
		hits  []storage.SearchHit
		after = q.After
	)
	for {
		want := limit + 1 - len(hits) // one past the page says more
		keys, err := db.searchCandidates(ctx, q, convs, mins, maxs, ids, size, after, want)
		if err != nil {
			return nil, false, wrapErr(ctx, op, err)
		}
		if len(keys) == 0 {
			break
		}
		found, err := db.searchCheck(ctx, q, keys)
		if err != nil {
			return nil, false, wrapErr(ctx, op, err)
		}
		hits = append(hits, found...)
		if len(keys) < want || len(hits) > limit {
			break
		}
		k := keys[len(keys)-1]
		after = &storage.SearchCursor{CreatedAt: time.UnixMilli(int64(k.ms)), ConversationID: k.conv, Seq: k.seq}
	}
	more := len(hits) > limit
	if more {
		hits = hits[:limit]
	}
	return hits, more, nil
}

// searchCandidates returns the keys of up to n messages with a row that
// matches q in the scopes, after the position after, in the search
// order, each once.
func (db *DB) searchCandidates(ctx context.Context, q SearchQuery, convs []string, mins, maxs []uint64, ids []any,
	size int, after *storage.SearchCursor, n int,
) ([]searchKey, error) {
	// The scopes are bound once each, as arrays; transform looks a row's
	// conversation up in a hash table (indexOf would scan the array for
	// every row). conversation_id IN lets the primary key skip what it
	// can: at a thousand conversations to a granule, not much for a
	// user's conversations spread over the table.
	var b strings.Builder
	b.WriteString(`WITH ? AS convs, ? AS mins, ? AS maxs
		SELECT conversation_id, seq, toUInt32(created_at), ` + createdMsExpr + ` AS created_ms
		FROM messages
		WHERE conversation_id IN ?
		AND seq >= transform(conversation_id, convs, mins, 0)
		AND seq <= transform(conversation_id, convs, maxs, 0)
		AND `)
	args := []any{convs, mins, maxs, ch.GroupSet{Value: ids}}
	// Without FINAL an index cannot hide a later state: hasToken, which
	// the search_tokens bloom filter serves, is safe wherever the index
	// exists.
	args = appendMatch(&b, args, q, db.features.TokenIndex)
	if after != nil {
		ms := max(after.CreatedAt.UnixMilli(), 0)
		b.WriteString(` AND (created_ms < ? OR (created_ms = ? AND
			(conversation_id < ? OR (conversation_id = ? AND seq < ?))))`)
		args = append(args, ms, ms, after.ConversationID, after.ConversationID, after.Seq)
	}
	// Replays and states of a message are rows of one key, with one
	// created_at: LIMIT 1 BY keeps one.
	b.WriteString(` ORDER BY created_ms DESC, conversation_id DESC, seq DESC
		LIMIT 1 BY conversation_id, seq LIMIT ?`)
	args = append(args, uint64(n))

	cctx, cancel := db.call(ctx)
	defer cancel()
	if size += b.Len(); size > defaultMaxQuerySize {
		cctx = ch.Context(cctx, ch.WithSettings(ch.Settings{"max_query_size": 2 * size}))
	}
	rows, err := db.conn.Query(cctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []searchKey
	for rows.Next() {
		var k searchKey
		if err := rows.Scan(&k.conv, &k.seq, &k.sec, &k.ms); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// searchCheck returns the messages of keys whose latest state matches q,
// in the search order. It reads the keys' rows only: their conversations
// and seqs, and their seconds' range, so that the partitions' minmax
// keeps the primary key from looking in every month. The whole-word
// terms are matched with position(): the condition applies to the latest
// states, after the inner query, where no index could serve it anyway.
func (db *DB) searchCheck(ctx context.Context, q SearchQuery, keys []searchKey) ([]storage.SearchHit, error) {
	pairs := make([]any, len(keys))
	convs := make([]any, 0, len(keys))
	seen := make(map[string]bool, len(keys))
	lo, hi := keys[0].sec, keys[0].sec
	for i, k := range keys {
		pairs[i] = ch.GroupSet{Value: []any{k.conv, k.seq}}
		if !seen[k.conv] {
			seen[k.conv] = true
			convs = append(convs, k.conv)
		}
		lo, hi = min(lo, k.sec), max(hi, k.sec)
	}
	// The inner query takes each key's latest state (its row with the
	// highest version, as History does), the outer one keeps those that
	// match.
	var b strings.Builder
	b.WriteString(`SELECT ` + messageColumns + `, ` + createdMsExpr + ` AS created_ms
		FROM (
			SELECT ` + messageColumns + `, search_words FROM messages
			WHERE conversation_id IN ? AND (conversation_id, seq) IN ?
			AND created_at >= toDateTime(?) AND created_at <= toDateTime(?)
			ORDER BY conversation_id, seq, version DESC LIMIT 1 BY conversation_id, seq
		)
		WHERE `)
	args := []any{ch.GroupSet{Value: convs}, ch.GroupSet{Value: pairs}, lo, hi}
	args = appendMatch(&b, args, q, false)
	b.WriteString(` ORDER BY created_ms DESC, conversation_id DESC, seq DESC`)

	cctx, cancel := db.call(ctx)
	defer cancel()
	rows, err := db.conn.Query(cctx, b.String(), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var hits []storage.SearchHit
	for rows.Next() {
		var ms uint64
		m, err := scanArchived(rows, &ms)
		if err != nil {
			return nil, err
		}
		hits = append(hits, storage.SearchHit{Message: m.Message(), Text: m.SearchText})
	}
	return hits, rows.Err()
}

// appendMatch writes the condition a row of a hit meets to b and returns
// args with its parameters: not recalled, every term, CreatedAt in
// [q.From, q.To). With hasToken, whole-word terms use hasToken (which a
// token index serves), else position.
func appendMatch(b *strings.Builder, args []any, q SearchQuery, hasToken bool) []any {
	b.WriteString(`recalled = 0`)
	last := len(q.Terms) - 1
	for i, t := range q.Terms {
		switch {
		case i == last:
			// A word starting with t: no index serves a prefix.
			b.WriteString(` AND position(search_words, ?) > 0`)
			args = append(args, " "+t)
		case hasToken:
			// ClickHouse's tokens of search_words are its words (no word
			// holds an ASCII separator): hasToken is the whole-word match.
			b.WriteString(` AND hasToken(search_words, ?)`)
			args = append(args, t)
		default:
			b.WriteString(` AND position(search_words, ?) > 0`)
			args = append(args, " "+t+" ")
		}
	}
	if !q.From.IsZero() && q.From.After(minTime) {
		// created_at's bound lets the partitions' minmax skip months.
		b.WriteString(` AND created_at >= toDateTime(?) AND ` + createdNsExpr + ` >= ?`)
		args = append(args, uint32(q.From.Unix()), unixNano(q.From))
	}
	if !q.To.IsZero() && q.To.Before(maxTime) {
		b.WriteString(` AND created_at <= toDateTime(?) AND ` + createdNsExpr + ` < ?`)
		args = append(args, uint32(q.To.Unix()), unixNano(q.To))
	}
	return args
}

// searchKey is a candidate: its key, and its CreatedAt's second and
// millisecond.
type searchKey struct {
	conv string
	seq  uint64
	sec  uint32
	ms   uint64
}

// validateSearch reports input SearchMessages refuses.
func validateSearch(q SearchQuery) error {
	const prefix = "clickhouse: search messages: "
	if q.Limit < 1 {
		return fmt.Errorf(prefix+"Limit %d, want at least 1", q.Limit)
	}
	if len(q.Terms) == 0 {
		return errors.New(prefix + "no Terms")
	}
	for i, t := range q.Terms {
		// One folded word, as textsearch.Terms makes them: no space to
		// break the ' term ' match, no separator for hasToken to refuse.
		w := textsearch.Words(t)
		if len(w) != 1 || w[0].Start != 0 || w[0].End != len(t) || w[0].Folded != t {
			return fmt.Errorf(prefix+"Terms[%d] %q is not one folded word", i, t)
		}
	}
	seen := make(map[string]bool, len(q.Scopes))
	for i, s := range q.Scopes {
		if s.ConversationID == "" {
			return fmt.Errorf(prefix+"Scopes[%d]: empty ConversationID", i)
		}
		if seen[s.ConversationID] {
			return fmt.Errorf(prefix+"Scopes[%d]: conversation %q named twice", i, s.ConversationID)
		}
		seen[s.ConversationID] = true
	}
	return nil
}

// unixNano is t in Unix nanoseconds, for t inside DateTime's range
// (1970 to 2106, well inside int64's nanoseconds).
func unixNano(t time.Time) uint64 {
	return uint64(t.UnixNano())
}
