package clickhouse_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
)

func TestHistory(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newDB(t)
	// Conversation c holds seqs 1 to 10; d, which no case reads, 1 to 20.
	in := testMessages("c", 1, 10)
	require.NoError(t, db.WriteMessages(ctx, in))
	require.NoError(t, db.WriteMessages(ctx, testMessages("d", 1, 20)))

	seqs := func(from, to uint64) []uint64 {
		var out []uint64
		for s := from; s <= to; s++ {
			out = append(out, s)
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		q        storage.HistoryQuery
		maxSeq   uint64
		want     []uint64
		wantMore bool
	}{
		{name: "before_from_the_top", q: storage.HistoryQuery{Direction: storage.Before, Limit: 3}, maxSeq: 10, want: seqs(8, 10), wantMore: true},
		{name: "before_anchor", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 5, Limit: 3}, maxSeq: 10, want: seqs(2, 4), wantMore: true},
		{name: "before_reaches_the_first", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 4, Limit: 3}, maxSeq: 10, want: seqs(1, 3)},
		{name: "before_stops_at_min_seq", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 6, Limit: 3, MinSeq: 3}, maxSeq: 10, want: seqs(3, 5)},
		{name: "before_one_above_min_seq", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 7, Limit: 3, MinSeq: 3}, maxSeq: 10, want: seqs(4, 6), wantMore: true},
		{name: "before_anchor_at_min_seq", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 3, Limit: 3, MinSeq: 3}, maxSeq: 10},
		{name: "before_anchor_1", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 1, Limit: 3}, maxSeq: 10},
		{name: "before_anchor_at_max_seq", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 6, Limit: 2}, maxSeq: 6, want: seqs(4, 5), wantMore: true},
		{name: "before_anchor_over_max_seq", q: storage.HistoryQuery{Direction: storage.Before, Anchor: 50, Limit: 2}, maxSeq: 7, want: seqs(6, 7), wantMore: true},
		{name: "before_top_below_stored", q: storage.HistoryQuery{Direction: storage.Before, Limit: 10}, maxSeq: 6, want: seqs(1, 6)},
		{name: "before_exact_fit", q: storage.HistoryQuery{Direction: storage.Before, Limit: 10}, maxSeq: 10, want: seqs(1, 10)},
		{name: "before_one_short", q: storage.HistoryQuery{Direction: storage.Before, Limit: 9}, maxSeq: 10, want: seqs(2, 10), wantMore: true},
		{name: "before_max_seq_over_stored", q: storage.HistoryQuery{Direction: storage.Before, Limit: 3}, maxSeq: 100, want: seqs(8, 10), wantMore: true},
		{name: "after_max_seq_over_stored", q: storage.HistoryQuery{Direction: storage.After, Anchor: 7, Limit: 3}, maxSeq: 100, want: seqs(8, 10)},
		{name: "after_from_the_bottom", q: storage.HistoryQuery{Direction: storage.After, Limit: 3}, maxSeq: 10, want: seqs(1, 3), wantMore: true},
		{name: "after_anchor", q: storage.HistoryQuery{Direction: storage.After, Anchor: 6, Limit: 3}, maxSeq: 10, want: seqs(7, 9), wantMore: true},
		{name: "after_reaches_max_seq", q: storage.HistoryQuery{Direction: storage.After, Anchor: 7, Limit: 3}, maxSeq: 10, want: seqs(8, 10)},
		{name: "after_stops_at_max_seq", q: storage.HistoryQuery{Direction: storage.After, Anchor: 2, Limit: 3}, maxSeq: 5, want: seqs(3, 5)},
		{name: "after_one_below_max_seq", q: storage.HistoryQuery{Direction: storage.After, Anchor: 1, Limit: 3}, maxSeq: 5, want: seqs(2, 4), wantMore: true},
		{name: "after_anchor_below_min_seq", q: storage.HistoryQuery{Direction: storage.After, Anchor: 2, Limit: 2, MinSeq: 5}, maxSeq: 10, want: seqs(5, 6), wantMore: true},
		{name: "after_anchor_at_max_seq", q: storage.HistoryQuery{Direction: storage.After, Anchor: 8, Limit: 3}, maxSeq: 8},
		{name: "after_anchor_over_max_seq", q: storage.HistoryQuery{Direction: storage.After, Anchor: 99, Limit: 3}, maxSeq: 10},
		{name: "after_largest_anchor", q: storage.HistoryQuery{Direction: storage.After, Anchor: math.MaxUint64, Limit: 3}, maxSeq: math.MaxUint64},
		{name: "max_seq_0", q: storage.HistoryQuery{Direction: storage.Before, Limit: 3}, maxSeq: 0},
		{name: "min_seq_over_max_seq", q: storage.HistoryQuery{Direction: storage.After, Limit: 3, MinSeq: 8}, maxSeq: 7},
		{name: "min_seq_equals_max_seq", q: storage.HistoryQuery{Direction: storage.Before, Limit: 3, MinSeq: 7}, maxSeq: 7, want: seqs(7, 7)},
		{name: "unknown_conversation", q: storage.HistoryQuery{ConversationID: "nope", Direction: storage.Before, Limit: 3}, maxSeq: 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if tc.q.ConversationID == "" {
				tc.q.ConversationID = "c"
			}
			page, more, err := db.History(ctx, tc.q, tc.maxSeq)
			require.NoError(t, err)
			got := make([]uint64, len(page))
			for i, m := range page {
				require.Equal(t, tc.q.ConversationID, m.ConversationID)
				got[i] = m.Seq
			}
			if tc.want == nil {
				require.Empty(t, got)
			} else {
				require.Equal(t, tc.want, got)
			}
			require.Equal(t, tc.wantMore, more, "more")
		})
	}

	t.Run("messages_as_stored", func(t *testing.T) {
		t.Parallel()
		page, _, err := db.History(ctx, storage.HistoryQuery{ConversationID: "c", Direction: storage.After, Limit: 2}, 10)
		require.NoError(t, err)
		require.Equal(t, []storage.Message{in[0].Message(), in[1].Message()}, page)
		require.Equal(t, storage.Message{
			ID: in[0].ID, ConversationID: "c", Seq: 1, SenderID: "u-alice", SenderDeviceID: "d-phone",
			ClientMsgID: in[0].ClientMsgID, Kind: storage.MessageText, Body: in[0].Body, CreatedAt: in[0].CreatedAt,
		}, page[0], "every field, CreatedAt to the nanosecond")
	})

	t.Run("bad_input", func(t *testing.T) {
		t.Parallel()
		for _, tc := range []struct {
			q    storage.HistoryQuery
			want string
		}{
			{q: storage.HistoryQuery{Direction: storage.Before, Limit: 1}, want: "empty ConversationID"},
			{q: storage.HistoryQuery{ConversationID: "c", Direction: storage.Before}, want: "Limit 0, want at least 1"},
			{q: storage.HistoryQuery{ConversationID: "c", Direction: storage.After, Limit: -1}, want: "Limit -1, want at least 1"},
			{q: storage.HistoryQuery{ConversationID: "c", Limit: 1}, want: "Direction 0 is neither Before nor After"},
		} {
			_, _, err := db.History(ctx, tc.q, 10)
			require.ErrorContains(t, err, "clickhouse: history: "+tc.want)
		}
	})
}

func TestHistoryRecalledState(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, name := newDB(t)
	require.NoError(t, server.Exec(ctx, "SYSTEM STOP MERGES "+name+".messages"))
	batch := testMessages("c", 1, 3)
	batch[1].MediaID = "media-2"
	require.NoError(t, db.WriteMessages(ctx, batch))
	recall := batch[1]
	recall.RecalledAt = recall.CreatedAt.Add(time.Minute)
	require.NoError(t, db.WriteMessages(ctx, []clickhouse.ArchivedMessage{recall}))
	// The earlier state arrives again after the recall (a replay).
	require.NoError(t, db.WriteMessages(ctx, batch))
	require.Equal(t, "7", rawCount(t, server, name), "only FINAL collapses the states")

	for _, dir := range []storage.Direction{storage.Before, storage.After} {
		page, more, err := db.History(ctx, storage.HistoryQuery{ConversationID: "c", Direction: dir, Limit: 3}, 3)
		require.NoError(t, err)
		require.False(t, more)
		require.Len(t, page, 3)
		require.Nil(t, page[1].Body, "a recalled message has no body")
		require.Equal(t, recall.RecalledAt, page[1].RecalledAt)
		require.Equal(t, "media-2", page[1].MediaID, "the media id stays")
		require.Equal(t, batch[0].Body, page[0].Body, "the others keep theirs")
		require.True(t, page[0].RecalledAt.IsZero())
		require.Equal(t, batch[2].Body, page[2].Body)
	}
}

func TestHistoryClosed(t *testing.T) {
	t.Parallel()
	db, err := clickhouse.Open(context.Background(), testConfig(server, server.NewDatabase(t)))
	require.NoError(t, err)
	require.NoError(t, db.Close())
	_, _, err = db.History(context.Background(), storage.HistoryQuery{ConversationID: "c", Direction: storage.Before, Limit: 1}, 1)
	require.ErrorIs(t, err, storage.ErrUnavailable)
	_, _, err = db.SearchMessages(context.Background(), clickhouse.SearchQuery{Terms: []string{"a"}, Limit: 1,
		Scopes: []clickhouse.SearchScope{{ConversationID: "c", MaxSeq: 1}}})
	require.ErrorIs(t, err, storage.ErrUnavailable)
}
