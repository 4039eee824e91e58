package storagetest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/textsearch"
)

var searchTests = []test{
	{"finds_by_word", testSearchFindsByWord},
	{"prefix_on_last_term", testSearchPrefix},
	{"case_and_diacritics", testSearchFolding},
	{"only_member_conversations", testSearchMembership},
	{"not_before_join_point", testSearchJoinPoint},
	{"recalled_gone", testSearchRecalled},
	{"newest_first", testSearchNewestFirst},
	{"paging_covers_all_once", testSearchPaging},
	{"conversation_filter", testSearchConversationFilter},
	{"time_range", testSearchTimeRange},
	{"query_syntax_harmless", testSearchSyntaxHarmless},
	{"captions_not_notices", testSearchCaptions},
}

// said is a text message from sender to c created at(sec), searchable by
// its body.
func said(c storage.Conversation, sender storage.User, body string, sec int) storage.NewMessage {
	m := text(c, sender, body)
	m.SearchText = body
	m.CreatedAt = at(sec)
	return m
}

// search runs a query for u with the words of query and returns every
// hit, requiring a single page.
func (f *fixture) search(u storage.User, query string, edit ...func(*storage.SearchQuery)) []storage.SearchHit {
	f.t.Helper()
	q := storage.SearchQuery{UserID: u.ID, Terms: textsearch.Terms(query), Limit: 1000}
	for _, e := range edit {
		e(&q)
	}
	hits, more, err := f.s.SearchMessages(f.ctx(), q)
	require.NoError(f.t, err)
	require.False(f.t, more)
	return hits
}

// ids lists the message ids of hits, in order.
func ids(hits []storage.SearchHit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.Message.ID
	}
	return out
}

func testSearchFindsByWord(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	fox := said(d, a, "The quick brown fox", 1)
	dog := said(d, b, "a lazy dog, quickly", 2)
	msgs := f.append(fox, dog)

	hits := f.search(b, "fox")
	require.Len(t, hits, 1)
	require.Equal(t, asRead(msgs[0]), hits[0].Message)
	require.Equal(t, "The quick brown fox", hits[0].Text)

	// Words, not substrings: "quick" is not a prefix term here.
	require.Equal(t, []string{fox.ID}, ids(f.search(a, "quick brown")))
	require.Empty(t, f.search(a, "own"))
	require.Empty(t, f.search(a, "fox cat"), "every term must match")
	require.Equal(t, []string{dog.ID}, ids(f.search(a, "dog LAZY")))

	hits, more, err := s.SearchMessages(f.ctx(), storage.SearchQuery{UserID: a.ID, Limit: 10})
	require.NoError(t, err)
	require.Empty(t, hits, "no terms find nothing")
	require.False(t, more)
}

func testSearchPrefix(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	m := said(d, a, "quick brown fox", 1)
	f.append(m)
	require.Equal(t, []string{m.ID}, ids(f.search(a, "brown fo")))
	require.Equal(t, []string{m.ID}, ids(f.search(a, "qu")))
	require.Empty(t, f.search(a, "fo brown"), "only the last term is a prefix")
	require.Empty(t, f.search(a, "brown foxes"))
}

func testSearchFolding(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	m := said(d, a, "Crème BRÛLÉE at the Café — Привет, Мир!", 1)
	f.append(m)
	for _, q := range []string{"creme brulee", "CRÈME", "cafe", "café", "мир"} {
		require.Equal(t, []string{m.ID}, ids(f.search(a, q)), q)
	}
	require.Empty(t, f.search(a, "КАФЕ привет"), "Cyrillic КАФЕ is not Latin cafe")
}

func testSearchMembership(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, c := f.user(), f.user(), f.user()
	ab, bc := f.direct(a, b), f.direct(b, c)
	mine := said(ab, a, "secret plans", 1)
	theirs := said(bc, c, "secret plans too", 2)
	f.append(mine, theirs)

	require.Equal(t, []string{mine.ID}, ids(f.search(a, "secret")))
	require.Equal(t, []string{theirs.ID, mine.ID}, ids(f.search(b, "secret")))
	require.Empty(t, f.search(a, "secret", func(q *storage.SearchQuery) { q.ConversationID = bc.ID }),
		"a conversation the user is not in yields nothing")
	require.Empty(t, f.search(f.user(), "secret"))
}

func testSearchJoinPoint(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, early, late := f.user(), f.user(), f.user()
	g, _ := f.group(owner, early)
	before := said(g, owner, "launch date is friday", 1)
	f.append(before)
	_, err := s.AddMembers(f.ctx(), g.ID, []string{late.ID}, 10, f.notice(owner, 2))
	require.NoError(t, err)
	after := said(g, owner, "launch moved to monday", 3)
	f.append(after)

	require.Equal(t, []string{after.ID, before.ID}, ids(f.search(early, "launch")))
	require.Equal(t, []string{after.ID}, ids(f.search(late, "launch")), "nothing from before the join")

	// A member who was removed finds nothing there any more.
	_, err = s.RemoveMember(f.ctx(), g.ID, early.ID, f.notice(owner, 4))
	require.NoError(t, err)
	require.Empty(t, f.search(early, "launch"))
}

func testSearchRecalled(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	msgs := f.append(said(d, a, "oops wrong password hunter2", 1), said(d, a, "the password is elsewhere", 2))
	require.Len(t, f.search(b, "password"), 2)

	_, _, err := s.RecallMessage(f.ctx(), d.ID, msgs[0].Seq, f.notice(a, 3))
	require.NoError(t, err)
	require.Equal(t, []string{msgs[1].ID}, ids(f.search(b, "password")))
	require.Empty(t, f.search(b, "hunter2"))
	require.Empty(t, f.search(a, "oops"))

	// Later appends (which reuse the index) are unaffected.
	later := said(d, b, "hunter3 is fine", 4)
	f.append(later)
	require.Equal(t, []string{later.ID}, ids(f.search(a, "hunter")))
}

func testSearchNewestFirst(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, c := f.user(), f.user(), f.user()
	ab, ac := f.direct(a, b), f.direct(a, c)
	// Committed out of time order, across conversations.
	m3 := said(ab, b, "ping three", 30)
	m1 := said(ac, c, "ping one", 10)
	m4 := said(ac, a, "ping four", 40)
	m2 := said(ab, a, "ping two", 20)
	f.append(m3, m1)
	f.append(m4, m2)
	require.Equal(t, []string{m4.ID, m3.ID, m2.ID, m1.ID}, ids(f.search(a, "ping")))
}

func testSearchPaging(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, c := f.user(), f.user(), f.user()
	ab, ac := f.direct(a, b), f.direct(a, c)
	var batch []storage.NewMessage
	for i := range 23 {
		conv, from := ab, b
		if i%3 == 0 {
			conv, from = ac, c
		}
		// Pairs share a timestamp, so ties are ordered by the cursor's
		// other fields.
		batch = append(batch, said(conv, from, fmt.Sprintf("report %d", i), i/2))
		if i%4 == 0 {
			batch = append(batch, said(conv, from, fmt.Sprintf("noise %d", i), i/2))
		}
	}
	f.append(batch...)
	all := f.search(a, "report")
	require.Len(t, all, 23)

	for _, size := range []int{1, 5, 7, 23} {
		t.Run(fmt.Sprintf("size_%d", size), func(t *testing.T) {
			var (
				got   []storage.SearchHit
				after *storage.SearchCursor
			)
			for pages := 0; ; pages++ {
				require.Less(t, pages, 30, "paging must end")
				hits, more, err := s.SearchMessages(f.ctx(), storage.SearchQuery{
					UserID: a.ID, Terms: []string{"report"}, Limit: size, After: after,
				})
				require.NoError(t, err)
				require.LessOrEqual(t, len(hits), size)
				got = append(got, hits...)
				if !more {
					break
				}
				require.Len(t, hits, size, "a page before the last is full")
				c := hits[len(hits)-1].Cursor()
				after = &c
			}
			require.Equal(t, ids(all), ids(got), "every hit exactly once, in order")
		})
	}
	for i := 1; i < len(all); i++ {
		p, q := all[i-1].Cursor(), all[i].Cursor()
		require.False(t, p.CreatedAt.Before(q.CreatedAt), "newest first")
	}
}

func testSearchConversationFilter(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, c := f.user(), f.user(), f.user()
	ab, ac := f.direct(a, b), f.direct(a, c)
	x := said(ab, b, "lunch today?", 1)
	y := said(ac, c, "lunch tomorrow?", 2)
	f.append(x, y)
	require.Equal(t, []string{x.ID}, ids(f.search(a, "lunch", func(q *storage.SearchQuery) { q.ConversationID = ab.ID })))
	require.Equal(t, []string{y.ID}, ids(f.search(a, "lunch", func(q *storage.SearchQuery) { q.ConversationID = ac.ID })))
}

func testSearchTimeRange(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	var msgs []storage.NewMessage
	for i := range 5 {
		msgs = append(msgs, said(d, a, fmt.Sprintf("standup %d", i), i*10))
	}
	f.append(msgs...)
	got := ids(f.search(b, "standup", func(q *storage.SearchQuery) { q.From, q.To = at(10), at(30) }))
	require.Equal(t, []string{msgs[2].ID, msgs[1].ID}, got, "From inclusive, To exclusive")
	got = ids(f.search(b, "standup", func(q *storage.SearchQuery) { q.From = at(35) }))
	require.Equal(t, []string{msgs[4].ID}, got)
	got = ids(f.search(b, "standup", func(q *storage.SearchQuery) { q.To = at(10) }))
	require.Equal(t, []string{msgs[0].ID}, got)
}

func testSearchSyntaxHarmless(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	m := said(d, a, `rock AND roll OR not "near" the col:umn`, 1)
	f.append(m)
	for _, q := range []string{
		`"rock`, `rock*`, `rock AND roll`, `NOT near`, `or`, `col:umn`, `rock^`, `(roll)`,
		`NEAR(rock roll)`, `rock -roll`, `'; DROP TABLE messages; --`, `\'`, `rock & roll | !x`,
		`roll:*`, `"" '' \\`, `{col}: rock`,
	} {
		hits, _, err := s.SearchMessages(f.ctx(), storage.SearchQuery{UserID: a.ID, Terms: textsearch.Terms(q), Limit: 10})
		require.NoError(t, err, q)
		for _, h := range hits {
			require.Equal(t, m.ID, h.Message.ID, q)
		}
	}
	require.Equal(t, []string{m.ID}, ids(f.search(a, "AND or NOT near")), "operators are words")
	require.Empty(t, f.search(a, "rock -roll -x"), "no exclusion syntax: x must match")
}

func testSearchCaptions(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	img := text(d, a, "")
	img.Kind, img.Body, img.SearchText, img.CreatedAt = storage.MessageImage, []byte("img"), "sunset over the bay", at(1)
	plain := text(d, a, "sunset") // no SearchText: not indexed
	notice := f.notice(a, 3)
	notice.ConversationID = d.ID
	f.append(img, plain, notice)
	hits := f.search(b, "sunset")
	require.Equal(t, []string{img.ID}, ids(hits))
	require.Equal(t, storage.MessageImage, hits[0].Message.Kind)
}
