package storagetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var historyTests = []test{
	{"paging", testHistoryPaging},
	{"walk_both_ways", testHistoryWalk},
	{"empty", testHistoryEmpty},
}

func testHistoryPaging(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	sent := f.send(d, a, 10) // seqs 1..10

	for _, tc := range []struct {
		name    string
		q       storage.HistoryQuery
		want    []uint64
		hasMore bool
	}{
		{"before_newest", storage.HistoryQuery{Direction: storage.Before, Limit: 4}, span(7, 10), true},
		{"before_anchor", storage.HistoryQuery{Direction: storage.Before, Anchor: 7, Limit: 4}, span(3, 6), true},
		{"before_last_page", storage.HistoryQuery{Direction: storage.Before, Anchor: 3, Limit: 4}, span(1, 2), false},
		{"before_exact_fit", storage.HistoryQuery{Direction: storage.Before, Anchor: 5, Limit: 4}, span(1, 4), false},
		{"before_first", storage.HistoryQuery{Direction: storage.Before, Anchor: 1, Limit: 4}, span(1, 0), false},
		{"before_everything", storage.HistoryQuery{Direction: storage.Before, Limit: 100}, span(1, 10), false},
		{"before_past_the_end", storage.HistoryQuery{Direction: storage.Before, Anchor: 50, Limit: 3}, span(8, 10), true},
		{"after_start", storage.HistoryQuery{Direction: storage.After, Limit: 4}, span(1, 4), true},
		{"after_anchor", storage.HistoryQuery{Direction: storage.After, Anchor: 4, Limit: 4}, span(5, 8), true},
		{"after_exact_fit", storage.HistoryQuery{Direction: storage.After, Anchor: 6, Limit: 4}, span(7, 10), false},
		{"after_last_page", storage.HistoryQuery{Direction: storage.After, Anchor: 8, Limit: 4}, span(9, 10), false},
		{"after_newest", storage.HistoryQuery{Direction: storage.After, Anchor: 10, Limit: 4}, span(1, 0), false},
		{"limit_one", storage.HistoryQuery{Direction: storage.Before, Anchor: 6, Limit: 1}, span(5, 5), true},
		{"before_min_seq", storage.HistoryQuery{Direction: storage.Before, Limit: 100, MinSeq: 4}, span(4, 10), false},
		{"before_min_seq_boundary", storage.HistoryQuery{Direction: storage.Before, Anchor: 6, Limit: 2, MinSeq: 4}, span(4, 5), false},
		{"before_min_seq_more", storage.HistoryQuery{Direction: storage.Before, Anchor: 7, Limit: 2, MinSeq: 4}, span(5, 6), true},
		{"before_below_min_seq", storage.HistoryQuery{Direction: storage.Before, Anchor: 4, Limit: 5, MinSeq: 4}, span(1, 0), false},
		{"after_min_seq", storage.HistoryQuery{Direction: storage.After, Limit: 3, MinSeq: 4}, span(4, 6), true},
		{"after_min_seq_above_anchor", storage.HistoryQuery{Direction: storage.After, Anchor: 2, Limit: 10, MinSeq: 8}, span(8, 10), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := tc.q
			q.ConversationID = d.ID
			page, more, err := s.History(f.ctx(), q)
			require.NoError(t, err)
			require.Equal(t, tc.want, seqs(page), "ascending, inside the bounds")
			require.Equal(t, tc.hasMore, more)
			for _, m := range page {
				require.Equal(t, sent[m.Seq-1], m)
			}
		})
	}
}

// testHistoryWalk pages through a conversation from the newest back and
// from a join point forward, as a client would.
func testHistoryWalk(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	f.send(d, a, 23)

	for _, tc := range []struct {
		name   string
		dir    storage.Direction
		minSeq uint64
		want   []uint64
	}{
		{"backward", storage.Before, 0, span(1, 23)},
		{"backward_from_join", storage.Before, 6, span(6, 23)},
		{"forward", storage.After, 0, span(1, 23)},
		{"forward_from_join", storage.After, 6, span(6, 23)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []uint64
			anchor := uint64(0)
			for pages := 0; ; pages++ {
				require.Less(t, pages, 10, "paging does not end")
				page, more, err := s.History(f.ctx(), storage.HistoryQuery{
					ConversationID: d.ID, Anchor: anchor, Direction: tc.dir, Limit: 5, MinSeq: tc.minSeq,
				})
				require.NoError(t, err)
				require.LessOrEqual(t, len(page), 5)
				if tc.dir == storage.Before {
					got = append(seqs(page), got...)
					if len(page) > 0 {
						anchor = page[0].Seq
					}
				} else {
					got = append(got, seqs(page)...)
					if len(page) > 0 {
						anchor = page[len(page)-1].Seq
					}
				}
				if !more {
					break
				}
				require.NotEmpty(t, page, "more with an empty page")
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func testHistoryEmpty(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)

	for _, dir := range []storage.Direction{storage.Before, storage.After} {
		page, more, err := s.History(f.ctx(), storage.HistoryQuery{ConversationID: d.ID, Direction: dir, Limit: 10})
		require.NoError(t, err)
		require.Empty(t, page)
		require.False(t, more)
	}
}
