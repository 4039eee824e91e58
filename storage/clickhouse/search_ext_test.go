package clickhouse_test

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/textsearch"
)

// searchBase is when the search tests' messages start.
var searchBase = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// textMessage is a text message of conv at seq, created at, with text as
// both body and search text.
func textMessage(conv string, seq uint64, at time.Time, text string) clickhouse.ArchivedMessage {
	return clickhouse.ArchivedMessage{
		ConversationID: conv,
		Seq:            seq,
		ID:             fmt.Sprintf("m-%s-%d", conv, seq),
		SenderID:       "u-bob",
		ClientMsgID:    fmt.Sprintf("c-%s-%d", conv, seq),
		Kind:           storage.MessageText,
		Body:           []byte(text),
		SearchText:     text,
		CreatedAt:      at,
	}
}

// everything scopes convs whole.
func everything(convs ...string) []clickhouse.SearchScope {
	out := make([]clickhouse.SearchScope, len(convs))
	for i, c := range convs {
		out[i] = clickhouse.SearchScope{ConversationID: c, MaxSeq: math.MaxUint64}
	}
	return out
}

// hitKeys is "conv/seq" of each hit, in order.
func hitKeys(hits []storage.SearchHit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = fmt.Sprintf("%s/%d", h.Message.ConversationID, h.Message.Seq)
	}
	return out
}

func TestSearchMessagesWords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	texts := []string{
		1: "Hello world",
		2: "help me, please",
		3: "Crème brûlée tonight?",
		4: "the world is big. hello!",
		5: "HELLO",
		6: "shell hello-world",
		7: "shell only",
		8: "",
		9: "Ünïcode ÇA VA",
	}
	var batch []clickhouse.ArchivedMessage
	for seq := 1; seq < len(texts); seq++ {
		batch = append(batch, textMessage("c", uint64(seq), searchBase.Add(time.Duration(seq)*time.Second), texts[seq]))
	}
	require.NoError(t, db.WriteMessages(ctx, batch))

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{query: "hello", want: []string{"c/6", "c/5", "c/4", "c/1"}},
		{query: "hel", want: []string{"c/6", "c/5", "c/4", "c/2", "c/1"}},
		{query: "shell", want: []string{"c/7", "c/6"}},
		{query: "ell"}, // inside words only
		{query: "hello wor", want: []string{"c/6", "c/4", "c/1"}},
		{query: "world, HELLO", want: []string{"c/6", "c/4", "c/1"}},
		{query: "wor hello"}, // only the last term is a prefix
		{query: "hello world big", want: []string{"c/4"}},
		{query: "hello please"},
		{query: "creme", want: []string{"c/3"}},
		{query: "BRÛLÉE tonight", want: []string{"c/3"}},
		{query: "crè", want: []string{"c/3"}},
		{query: "unicode ça", want: []string{"c/9"}},
		{query: "nothing"},
	} {
		t.Run(strings.ReplaceAll(tc.query, " ", "_"), func(t *testing.T) {
			t.Parallel()
			terms := textsearch.Terms(tc.query)
			hits, more, err := db.SearchMessages(ctx, clickhouse.SearchQuery{Terms: terms, Scopes: everything("c"), Limit: 20})
			require.NoError(t, err)
			require.False(t, more)
			if tc.want == nil {
				require.Empty(t, hits)
				return
			}
			require.Equal(t, tc.want, hitKeys(hits))
			for _, h := range hits {
				m := batch[h.Message.Seq-1]
				require.Equal(t, m.Message(), h.Message)
				require.Equal(t, m.SearchText, h.Text)
			}
		})
	}
}

func TestSearchMessagesScopes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	var batch []clickhouse.ArchivedMessage
	for i, conv := range []string{"c1", "c2", "c3", "c4"} {
		for seq := uint64(1); seq <= 10; seq++ {
			at := searchBase.Add(time.Duration(i)*time.Hour + time.Duration(seq)*time.Minute)
			batch = append(batch, textMessage(conv, seq, at, "apple pie"))
		}
	}
	require.NoError(t, db.WriteMessages(ctx, batch))

	search := func(t *testing.T, scopes []clickhouse.SearchScope) []string {
		t.Helper()
		hits, more, err := db.SearchMessages(ctx, clickhouse.SearchQuery{Terms: []string{"apple"}, Scopes: scopes, Limit: 100})
		require.NoError(t, err)
		require.False(t, more)
		return hitKeys(hits)
	}
	t.Run("join_points_and_boundaries", func(t *testing.T) {
		t.Parallel()
		got := search(t, []clickhouse.SearchScope{
			{ConversationID: "c1", MinSeq: 4, MaxSeq: 7},
			{ConversationID: "c2", MinSeq: 0, MaxSeq: 3},
			{ConversationID: "c4", MinSeq: 9, MaxSeq: 9},
			{ConversationID: "c-none", MinSeq: 1, MaxSeq: 100},
		})
		require.Equal(t, []string{"c4/9", "c2/3", "c2/2", "c2/1", "c1/7", "c1/6", "c1/5", "c1/4"}, got, "c3 is outside the scopes")
	})
	t.Run("empty_ranges", func(t *testing.T) {
		t.Parallel()
		require.Empty(t, search(t, []clickhouse.SearchScope{{ConversationID: "c1", MinSeq: 5, MaxSeq: 4}, {ConversationID: "c2", MaxSeq: 0}}))
		require.Empty(t, search(t, nil), "no scopes")
	})
	t.Run("thousands_of_scopes", func(t *testing.T) {
		t.Parallel()
		// 5000 long conversation ids: more SQL than the default
		// max_query_size (256 KiB) allows.
		scopes := make([]clickhouse.SearchScope, 0, 5000)
		for i := range 4998 {
			scopes = append(scopes, clickhouse.SearchScope{ConversationID: fmt.Sprintf("%064d", i), MinSeq: 1, MaxSeq: math.MaxUint64})
		}
		scopes = append(scopes, clickhouse.SearchScope{ConversationID: "c3", MinSeq: 10, MaxSeq: 10},
			clickhouse.SearchScope{ConversationID: "c1", MinSeq: 2, MaxSeq: 2})
		require.Equal(t, []string{"c3/10", "c1/2"}, search(t, scopes))
	})
}

func TestSearchMessagesTimeBounds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	at := func(seq uint64) time.Time {
		// Whole seconds apart, each with a sub-millisecond part.
		return searchBase.Add(time.Duration(seq)*time.Second + time.Duration(seq)*1234*time.Nanosecond)
	}
	var batch []clickhouse.ArchivedMessage
	for seq := uint64(1); seq <= 8; seq++ {
		batch = append(batch, textMessage("c", seq, at(seq), "meeting notes"))
	}
	require.NoError(t, db.WriteMessages(ctx, batch))
	for _, tc := range []struct {
		name     string
		from, to time.Time
		want     []string
	}{
		{name: "from_inclusive_to_exclusive", from: at(3), to: at(6), want: []string{"c/5", "c/4", "c/3"}},
		{name: "to_a_nanosecond_later", from: at(3), to: at(6).Add(1), want: []string{"c/6", "c/5", "c/4", "c/3"}},
		{name: "from_a_nanosecond_later", from: at(3).Add(1), to: at(6), want: []string{"c/5", "c/4"}},
		{name: "from_only", from: at(7), want: []string{"c/8", "c/7"}},
		{name: "to_only", to: at(3), want: []string{"c/2", "c/1"}},
		{name: "empty_range", from: at(5), to: at(5)},
		{name: "before_1970", to: time.Date(1969, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "after_2106", from: time.Date(2107, 1, 1, 0, 0, 0, 0, time.UTC)},
		{name: "wide", from: time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), to: time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
			want: []string{"c/8", "c/7", "c/6", "c/5", "c/4", "c/3", "c/2", "c/1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			hits, _, err := db.SearchMessages(ctx, clickhouse.SearchQuery{Terms: []string{"meeting"}, Scopes: everything("c"),
				From: tc.from, To: tc.to, Limit: 20})
			require.NoError(t, err)
			if tc.want == nil {
				require.Empty(t, hits)
				return
			}
			require.Equal(t, tc.want, hitKeys(hits))
		})
	}
}

func TestSearchMessagesPaging(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	// Two conversations with four messages each in one millisecond and
	// two in the next. Within a millisecond the exact times run against
	// the search order (conversation, then seq, descending), so an order
	// or cursor by exact time would show.
	var batch []clickhouse.ArchivedMessage
	for _, conv := range []string{"ca", "cb"} {
		for seq := uint64(1); seq <= 6; seq++ {
			ms := time.Duration(0)
			if seq > 4 {
				ms = time.Millisecond
			}
			ns := time.Duration(100 + seq) // cb: later seq, later time
			if conv == "ca" {
				ns = time.Duration(900_000 - seq*1000) // ca: later seq, earlier time, after all of cb's
			}
			batch = append(batch, textMessage(conv, seq, searchBase.Add(ms+ns), "same words"))
		}
	}
	// A message in another conversation, not searched, in the same ms.
	batch = append(batch, textMessage("cc", 1, searchBase.Add(500), "same words"))
	require.NoError(t, db.WriteMessages(ctx, batch))

	var want []storage.SearchHit
	for _, m := range batch[:12] {
		want = append(want, storage.SearchHit{Message: m.Message(), Text: m.SearchText})
	}
	slices.SortFunc(want, func(a, b storage.SearchHit) int {
		return cmp.Or(
			-cmp.Compare(a.Message.CreatedAt.UnixMilli(), b.Message.CreatedAt.UnixMilli()),
			-cmp.Compare(a.Message.ConversationID, b.Message.ConversationID),
			-cmp.Compare(a.Message.Seq, b.Message.Seq))
	})
	require.Equal(t, []string{"cb/6", "cb/5", "ca/6", "ca/5", "cb/4", "cb/3", "cb/2", "cb/1", "ca/4", "ca/3", "ca/2", "ca/1"}, hitKeys(want))

	q := clickhouse.SearchQuery{Terms: textsearch.Terms("same wo"), Scopes: everything("ca", "cb"), Limit: 20}
	all, more, err := db.SearchMessages(ctx, q)
	require.NoError(t, err)
	require.False(t, more)
	require.Equal(t, want, all)

	for _, limit := range []int{1, 2, 5} {
		for _, msCursor := range []bool{false, true} {
			t.Run(fmt.Sprintf("limit_%d_ms_cursor_%v", limit, msCursor), func(t *testing.T) {
				t.Parallel()
				q := q
				q.Limit = limit
				var got []storage.SearchHit
				for range len(want) + 1 {
					page, more, err := db.SearchMessages(ctx, q)
					require.NoError(t, err)
					require.LessOrEqual(t, len(page), limit)
					got = append(got, page...)
					if !more {
						break
					}
					require.Len(t, page, limit, "a page before the last is full")
					c := page[len(page)-1].Cursor()
					if msCursor {
						// As the server serializes it.
						c.CreatedAt = c.CreatedAt.Truncate(time.Millisecond)
					}
					q.After = &c
				}
				require.Equal(t, hitKeys(want), hitKeys(got), "no duplicates, no skips")
				require.Equal(t, want, got)
			})
		}
	}
}

func TestSearchMessagesRecall(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, name := newDB(t)
	// Stopped merges leave each state in its own part: only FINAL can
	// collapse them, and a condition applied before it (PREWHERE) would
	// keep the earlier state.
	require.NoError(t, server.Exec(ctx, "SYSTEM STOP MERGES "+name+".messages"))
	batch := []clickhouse.ArchivedMessage{
		textMessage("c", 1, searchBase, "secret plan"),
		textMessage("c", 2, searchBase.Add(time.Second), "secret plan B"),
		textMessage("c", 3, searchBase.Add(2*time.Second), "secret plan C"),
	}
	require.NoError(t, db.WriteMessages(ctx, batch))
	search := func() []string {
		hits, _, err := db.SearchMessages(ctx, clickhouse.SearchQuery{Terms: []string{"secret", "plan"}, Scopes: everything("c"), Limit: 10})
		require.NoError(t, err)
		return hitKeys(hits)
	}
	require.Equal(t, []string{"c/3", "c/2", "c/1"}, search())

	recall := batch[1]
	recall.RecalledAt = recall.CreatedAt.Add(time.Minute)
	// SearchText still set: WriteMessages must not keep it.
	require.NoError(t, db.WriteMessages(ctx, []clickhouse.ArchivedMessage{recall}))
	require.Equal(t, []string{"c/3", "c/1"}, search(), "a recall hides the hit")
	// The earlier state again after the recall (a replay) loses.
	require.NoError(t, db.WriteMessages(ctx, batch))
	require.Equal(t, []string{"c/3", "c/1"}, search(), "a replay does not bring it back")
	require.Equal(t, "7", rawCount(t, server, name), "every state is stored")
}

func TestSearchMessagesBadInput(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	ok := clickhouse.SearchQuery{Terms: []string{"a"}, Scopes: everything("c"), Limit: 1}
	for _, tc := range []struct {
		name   string
		mutate func(*clickhouse.SearchQuery)
		want   string
	}{
		{name: "limit_0", mutate: func(q *clickhouse.SearchQuery) { q.Limit = 0 }, want: "Limit 0, want at least 1"},
		{name: "no_terms", mutate: func(q *clickhouse.SearchQuery) { q.Terms = nil }, want: "no Terms"},
		{name: "empty_term", mutate: func(q *clickhouse.SearchQuery) { q.Terms = []string{"a", ""} }, want: `Terms[1] "" is not one folded word`},
		{name: "unfolded_term", mutate: func(q *clickhouse.SearchQuery) { q.Terms = []string{"Hello"} }, want: `Terms[0] "Hello" is not one folded word`},
		{name: "two_words", mutate: func(q *clickhouse.SearchQuery) { q.Terms = []string{"a b"} }, want: `Terms[0] "a b" is not one folded word`},
		{name: "punctuation", mutate: func(q *clickhouse.SearchQuery) { q.Terms = []string{"a%"} }, want: `Terms[0] "a%" is not one folded word`},
		{name: "scope_without_conversation", mutate: func(q *clickhouse.SearchQuery) { q.Scopes = []clickhouse.SearchScope{{MaxSeq: 1}} }, want: "Scopes[0]: empty ConversationID"},
		{name: "scope_twice", mutate: func(q *clickhouse.SearchQuery) { q.Scopes = everything("c", "d", "c") }, want: `Scopes[2]: conversation "c" named twice`},
	} {
		q := ok
		tc.mutate(&q)
		_, _, err := db.SearchMessages(ctx, q)
		require.ErrorContains(t, err, "clickhouse: search messages: "+tc.want, tc.name)
	}
	hits, more, err := db.SearchMessages(ctx, ok)
	require.NoError(t, err)
	require.Empty(t, hits)
	require.False(t, more)

	require.NoError(t, db.WriteMessages(ctx, []clickhouse.ArchivedMessage{textMessage("c", 1, searchBase, "a")}))
	huge := ok
	huge.Limit = math.MaxInt
	hits, more, err = db.SearchMessages(ctx, huge)
	require.NoError(t, err, "a Limit past 10,000 is capped, not overflowed")
	require.Equal(t, []string{"c/1"}, hitKeys(hits))
	require.False(t, more)
}

func TestSearchMessagesLaterStates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, name := newDB(t)
	require.NoError(t, server.Exec(ctx, "SYSTEM STOP MERGES "+name+".messages"))
	var batch []clickhouse.ArchivedMessage
	for seq := uint64(1); seq <= 7; seq++ {
		batch = append(batch, textMessage("c", seq, searchBase.Add(time.Duration(seq)*time.Second), "old draft"))
	}
	require.NoError(t, db.WriteMessages(ctx, batch))
	var later []clickhouse.ArchivedMessage
	// The newest three recalled: their earlier states still match
	// without FINAL, so they come back as candidates a page must skip.
	for _, seq := range []uint64{5, 6, 7} {
		m := batch[seq-1]
		m.RecalledAt = m.CreatedAt.Add(time.Hour)
		later = append(later, m)
	}
	// 4 edited to lose "draft", 3 edited to a text with it again.
	for seq, text := range map[uint64]string{4: "old final", 3: "new draft"} {
		m := batch[seq-1]
		m.EditedAt = m.CreatedAt.Add(time.Hour)
		m.SearchText, m.Body = text, []byte(text)
		later = append(later, m)
	}
	require.NoError(t, db.WriteMessages(ctx, later))

	for _, tc := range []struct {
		query string
		want  []string
	}{
		{query: "draft", want: []string{"c/3", "c/2", "c/1"}},
		{query: "old draft", want: []string{"c/2", "c/1"}},
		{query: "new", want: []string{"c/3"}},
		{query: "final", want: []string{"c/4"}},
	} {
		for _, limit := range []int{1, 2, 10} {
			q := clickhouse.SearchQuery{Terms: textsearch.Terms(tc.query), Scopes: everything("c"), Limit: limit}
			var got []string
			for range 10 {
				page, more, err := db.SearchMessages(ctx, q)
				require.NoError(t, err)
				got = append(got, hitKeys(page)...)
				if !more {
					break
				}
				require.Len(t, page, limit, "%s, limit %d: a page before the last is full", tc.query, limit)
				c := page[len(page)-1].Cursor()
				q.After = &c
			}
			require.Equal(t, tc.want, got, "%s, limit %d", tc.query, limit)
		}
	}
	hits, _, err := db.SearchMessages(ctx, clickhouse.SearchQuery{Terms: []string{"new"}, Scopes: everything("c"), Limit: 1})
	require.NoError(t, err)
	require.Len(t, hits, 1)
	require.Equal(t, "new draft", hits[0].Text, "the edited text")
	require.Equal(t, []byte("new draft"), hits[0].Message.Body)
}
