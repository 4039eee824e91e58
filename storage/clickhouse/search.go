package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"maps"
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
	// Limit is at least 1: at most Limit hits are returned.
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
// are taken in their latest state (FINAL), so a recall archived after a
// message hides it, and a recalled message never matches. Hit.Message is
// what History returns for the message, Hit.Text its SearchText.
//
// Empty q.Scopes, or scopes and bounds that leave nothing to search,
// return no hits without a query. A Limit below 1, no terms, a term that
// is not one folded word, and a scope without a conversation or named
// twice are errors naming the field, and nothing is queried. Server
// trouble wraps storage.ErrUnavailable. Safe for concurrent use.
//
// On 18.16 the terms are matched with position() over search_words,
// reading every row of the scopes' seq ranges (the primary key narrows
// the read to them). On servers where skip indexes are exact under FINAL
// (Features.SkipIndexFinal), the whole-word terms are matched with
// hasToken, which the search_tokens bloom filter serves.
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

	// match is the condition a row must meet in its latest state, in
	// both phases: not recalled, every term, CreatedAt in [From, To).
	var match strings.Builder
	var matchArgs []any
	match.WriteString(`recalled = 0`)
	last := len(q.Terms) - 1
	for i, t := range q.Terms {
		switch {
		case i == last:
			// A word starting with t: no index serves a prefix.
			match.WriteString(` AND position(search_words, ?) > 0`)
			matchArgs = append(matchArgs, " "+t)
		case db.features.SkipIndexFinal:
			// ClickHouse's tokens of search_words are its words: hasToken
			// is the whole-word match, and the bloom filter serves it.
			match.WriteString(` AND hasToken(search_words, ?)`)
			matchArgs = append(matchArgs, t)
		default:
			// position, not LIKE or hasToken: on 20.1 to 25.5 an index
			// serving the condition under FINAL could skip a message's
			// recalled state and return its earlier one.
			match.WriteString(` AND position(search_words, ?) > 0`)
			matchArgs = append(matchArgs, " "+t+" ")
		}
	}
	if !q.From.IsZero() && q.From.After(minTime) {
		// created_at's bound lets the partitions' minmax skip months.
		match.WriteString(` AND created_at >= toDateTime(?) AND ` + createdNsExpr + ` >= ?`)
		matchArgs = append(matchArgs, uint32(q.From.Unix()), unixNano(q.From))
	}
	if !q.To.IsZero() && q.To.Before(maxTime) {
		match.WriteString(` AND created_at <= toDateTime(?) AND ` + createdNsExpr + ` < ?`)
		matchArgs = append(matchArgs, uint32(q.To.Unix()), unixNano(q.To))
	}

	settings := ch.Settings{}
	if db.features.SkipIndexFinal {
		settings["use_skip_indexes_if_final"] = 1
		settings["use_skip_indexes_if_final_exact_mode"] = 1
	}

	// Phase 1 finds the page's keys reading only the narrow columns the
	// condition and the order need: under FINAL, 18.16 reads every
	// selected column of every row in the ranges the primary key leaves,
	// and a user's conversations are spread over most granules (about a
	// thousand conversations share one), so reading bodies here would
	// read the table's. The scopes are bound once each, as arrays;
	// transform looks a row's conversation up in a hash table (indexOf
	// would scan the array for every row). conversation_id IN lets the
	// primary key skip what it can.
	var b strings.Builder
	b.WriteString(`WITH ? AS convs, ? AS mins, ? AS maxs
		SELECT conversation_id, seq, toUInt32(created_at), ` + createdMsExpr + ` AS created_ms
		FROM messages FINAL
		WHERE conversation_id IN ?
		AND seq >= transform(conversation_id, convs, mins, 0)
		AND seq <= transform(conversation_id, convs, maxs, 0)
		AND ` + match.String())
	args := append([]any{convs, mins, maxs, ch.GroupSet{Value: ids}}, matchArgs...)
	if c := q.After; c != nil {
		ms := max(c.CreatedAt.UnixMilli(), 0)
		b.WriteString(` AND (created_ms < ? OR (created_ms = ? AND
			(conversation_id < ? OR (conversation_id = ? AND seq < ?))))`)
		args = append(args, ms, ms, c.ConversationID, c.ConversationID, c.Seq)
	}
	// One row past the page tells whether there is more.
	b.WriteString(` ORDER BY created_ms DESC, conversation_id DESC, seq DESC LIMIT ?`)
	args = append(args, uint64(q.Limit)+1)
	phase1 := settings
	if size += b.Len(); size > defaultMaxQuerySize {
		phase1 = ch.Settings{"max_query_size": 2 * size}
		maps.Copy(phase1, settings)
	}
	keys, err := db.searchKeys(ctx, phase1, b.String(), args)
	if err != nil {
		return nil, false, wrapErr(ctx, op, err)
	}
	more := len(keys) > q.Limit
	if more {
		keys = keys[:q.Limit]
	}
	if len(keys) == 0 {
		return nil, false, nil
	}

	// Phase 2 reads the page's rows: the exact keys, and their seconds'
	// range so that the partitions' minmax keeps the primary key from
	// looking in every month. The condition is checked again: a message
	// recalled or edited between the two phases drops out of the page,
	// which is then shorter than Limit (more stays as phase 1 found it).
	pairs := make([]any, len(keys))
	pageConvs := make([]any, 0, len(keys))
	seenConv := make(map[string]bool, len(keys))
	lo, hi := keys[0].sec, keys[0].sec
	for i, k := range keys {
		pairs[i] = ch.GroupSet{Value: []any{k.conv, k.seq}}
		if !seenConv[k.conv] {
			seenConv[k.conv] = true
			pageConvs = append(pageConvs, k.conv)
		}
		lo, hi = min(lo, k.sec), max(hi, k.sec)
	}
	query := `SELECT ` + messageColumns + `, ` + createdMsExpr + ` AS created_ms
		FROM messages FINAL
		WHERE conversation_id IN ? AND (conversation_id, seq) IN ?
		AND created_at >= toDateTime(?) AND created_at <= toDateTime(?)
		AND ` + match.String() + `
		ORDER BY created_ms DESC, conversation_id DESC, seq DESC`
	args = append([]any{ch.GroupSet{Value: pageConvs}, ch.GroupSet{Value: pairs}, lo, hi}, matchArgs...)
	hits, err := db.searchRows(ctx, settings, query, args)
	if err != nil {
		return nil, false, wrapErr(ctx, op, err)
	}
	return hits, more, nil
}

// searchKey is a phase-1 hit: its key and CreatedAt's second.
type searchKey struct {
	conv string
	seq  uint64
	sec  uint32
}

// searchKeys runs SearchMessages' first phase.
func (db *DB) searchKeys(ctx context.Context, settings ch.Settings, query string, args []any) ([]searchKey, error) {
	cctx, cancel := db.call(ctx)
	defer cancel()
	if len(settings) > 0 {
		cctx = ch.Context(cctx, ch.WithSettings(settings))
	}
	rows, err := db.conn.Query(cctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []searchKey
	for rows.Next() {
		var (
			k  searchKey
			ms uint64
		)
		if err := rows.Scan(&k.conv, &k.seq, &k.sec, &ms); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// searchRows runs SearchMessages' second phase.
func (db *DB) searchRows(ctx context.Context, settings ch.Settings, query string, args []any) ([]storage.SearchHit, error) {
	cctx, cancel := db.call(ctx)
	defer cancel()
	if len(settings) > 0 {
		cctx = ch.Context(cctx, ch.WithSettings(settings))
	}
	rows, err := db.conn.Query(cctx, query, args...)
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
