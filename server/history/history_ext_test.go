package history_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/history"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

var ch *realsvc.ClickHouse

func TestMain(m *testing.M) {
	var err error
	if ch, err = realsvc.StartClickHouse(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := ch.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	os.Exit(code)
}

// archiveDB is what the reader needs of ClickHouse, with the search
// scopes built from the ranges.
type archiveDB struct{ *clickhouse.DB }

func (a archiveDB) Search(ctx context.Context, q storage.SearchQuery, ranges []storage.ArchivedRange) ([]storage.SearchHit, bool, error) {
	scopes := make([]clickhouse.SearchScope, len(ranges))
	for i, r := range ranges {
		scopes[i] = clickhouse.SearchScope{ConversationID: r.ConversationID, MinSeq: r.FromSeq, MaxSeq: r.ToSeq}
	}
	return a.SearchMessages(ctx, clickhouse.SearchQuery{Terms: q.Terms, Scopes: scopes, From: q.From, To: q.To, After: q.After, Limit: q.Limit})
}

// fixture is a conversation of n messages, an hour old, all archived and
// none trimmed yet.
type fixture struct {
	store *embedded.Store
	db    *clickhouse.DB
	conv  string
	// want is the whole history as the store served it before any trim.
	want []storage.Message
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	ctx := t.Context()
	s, err := embedded.Open(ctx, embedded.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	db, err := clickhouse.Open(ctx, clickhouse.Config{Addrs: []string{ch.Addr()}, Database: ch.NewDatabase(t), CallTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })

	base := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	for _, id := range []string{"a", "b"} {
		require.NoError(t, s.CreateUser(ctx, storage.User{ID: id, Username: id, PasswordHash: "x", CreatedAt: base}))
	}
	c, _, err := s.GetOrCreateDirect(ctx, "ab", "a", "b", base)
	require.NoError(t, err)
	msgs := make([]storage.NewMessage, n)
	for i := range msgs {
		text := fmt.Sprintf("word%d common", i)
		msgs[i] = storage.NewMessage{ID: fmt.Sprintf("m%d", i), ConversationID: c.ID, SenderID: "a", SenderDeviceID: "d",
			ClientMsgID: fmt.Sprintf("c%d", i), Kind: storage.MessageText, Body: []byte(text), SearchText: text,
			CreatedAt: base.Add(time.Duration(i) * time.Second)}
	}
	_, err = s.AppendMessages(ctx, msgs)
	require.NoError(t, err)
	require.NoError(t, s.EnableArchive(ctx))
	for done := false; !done; {
		_, done, err = s.BackfillOutbox(ctx, 100)
		require.NoError(t, err)
	}
	for {
		es, err := s.ReadOutbox(ctx, 100)
		require.NoError(t, err)
		if len(es) == 0 {
			break
		}
		keys, ids := make([]storage.MessageKey, len(es)), make([]int64, len(es))
		for i, e := range es {
			keys[i], ids[i] = e.Key, e.ID
		}
		recs, err := s.LoadMessages(ctx, keys)
		require.NoError(t, err)
		require.NoError(t, db.ArchiveMessages(ctx, recs))
		require.NoError(t, s.AckOutbox(ctx, ids))
	}
	want, more, err := s.History(ctx, storage.HistoryQuery{ConversationID: c.ID, Direction: storage.After, Limit: n + 1})
	require.NoError(t, err)
	require.False(t, more)
	require.Len(t, want, n)
	return &fixture{store: s, db: db, conv: c.ID, want: want}
}

// pageAll reads the whole conversation through r, limit a page, in dir.
func (f *fixture) pageAll(t *testing.T, r *history.Reader, dir storage.Direction, limit int) []storage.Message {
	t.Helper()
	var all []storage.Message
	anchor := uint64(0)
	for range 1000 {
		page, more, err := r.History(t.Context(), storage.HistoryQuery{ConversationID: f.conv, Anchor: anchor, Direction: dir, Limit: limit})
		require.NoError(t, err)
		require.LessOrEqual(t, len(page), limit)
		if dir == storage.Before {
			all = append(append([]storage.Message(nil), page...), all...)
			if len(page) > 0 {
				anchor = page[0].Seq
			}
		} else {
			all = append(all, page...)
			if len(page) > 0 {
				anchor = page[len(page)-1].Seq
			}
		}
		if !more {
			return all
		}
		require.NotEmpty(t, page, "more with an empty page")
	}
	t.Fatal("history did not end")
	return nil
}

// trimmingHot moves the boundary by step messages after every other
// read of the store: a trim between a read and its re-check, every page.
type trimmingHot struct {
	*embedded.Store
	t     *testing.T
	step  int
	reads int
	moved int
}

func (h *trimmingHot) History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	msgs, more, err := h.Store.History(ctx, q)
	if h.reads++; h.reads%2 == 1 {
		n, terr := h.TrimArchived(ctx, time.Now(), h.step)
		require.NoError(h.t, terr)
		h.moved += n
	}
	return msgs, more, err
}

// TestPagesEqualTheStoreWhileTheBoundaryMoves: paging both ways with
// several page sizes returns exactly the history the store had before
// any trim, while a trim moves the boundary under every page.
func TestPagesEqualTheStoreWhileTheBoundaryMoves(t *testing.T) {
	t.Parallel()
	for _, limit := range []int{1, 3, 10, 100} {
		for _, dir := range []storage.Direction{storage.Before, storage.After} {
			t.Run(fmt.Sprintf("limit%d_dir%d", limit, dir), func(t *testing.T) {
				t.Parallel()
				f := newFixture(t, 30)
				hot := &trimmingHot{Store: f.store, t: t, step: 4}
				r := history.New(hot, archiveDB{f.db})
				require.Equal(t, f.want, f.pageAll(t, r, dir, limit))
				require.Positive(t, hot.moved, "the boundary moved during the reads")
				// And once it has settled (everything but the newest in
				// the archive), again.
				for hot.step > 0 {
					n, err := f.store.TrimArchived(t.Context(), time.Now(), 100)
					require.NoError(t, err)
					if n == 0 {
						break
					}
				}
				seq, err := f.store.ArchivedSeq(t.Context(), f.conv)
				require.NoError(t, err)
				require.Equal(t, uint64(29), seq)
				require.Equal(t, f.want, f.pageAll(t, history.New(f.store, archiveDB{f.db}), dir, limit))
			})
		}
	}
}

// TestJoinPointHidesArchivedHistory: MinSeq applies below the boundary
// as above it.
func TestJoinPointHidesArchivedHistory(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 20)
	_, err := f.store.TrimArchived(t.Context(), time.Now(), 10)
	require.NoError(t, err)
	r := history.New(f.store, archiveDB{f.db})
	page, more, err := r.History(t.Context(), storage.HistoryQuery{ConversationID: f.conv, Direction: storage.Before, Limit: 100, MinSeq: 6})
	require.NoError(t, err)
	require.False(t, more)
	require.Equal(t, f.want[5:], page)
	page, more, err = r.History(t.Context(), storage.HistoryQuery{ConversationID: f.conv, Direction: storage.After, Limit: 3, MinSeq: 6})
	require.NoError(t, err)
	require.True(t, more)
	require.Equal(t, f.want[5:8], page)
}

// TestArchiveDownFailsOnlyArchivedPages: with ClickHouse gone, pages in
// the window still read; a page below it is Unavailable, not short.
func TestArchiveDownFailsOnlyArchivedPages(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 20)
	_, err := f.store.TrimArchived(t.Context(), time.Now(), 10) // seqs 1..10 archived only
	require.NoError(t, err)
	require.NoError(t, f.db.Close())
	r := history.New(f.store, archiveDB{f.db})
	page, more, err := r.History(t.Context(), storage.HistoryQuery{ConversationID: f.conv, Direction: storage.Before, Limit: 5})
	require.NoError(t, err)
	require.True(t, more)
	require.Equal(t, f.want[15:], page)
	_, _, err = r.History(t.Context(), storage.HistoryQuery{ConversationID: f.conv, Direction: storage.Before, Limit: 20})
	require.ErrorIs(t, err, storage.ErrUnavailable)
	_, _, err = r.History(t.Context(), storage.HistoryQuery{ConversationID: f.conv, Direction: storage.After, Limit: 5})
	require.ErrorIs(t, err, storage.ErrUnavailable)
}

// TestSearchArchivedFollowsRanges: the archive is searched only in the
// caller's archived ranges.
func TestSearchArchivedFollowsRanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, 20)
	r := history.New(f.store, archiveDB{f.db})
	q := storage.SearchQuery{UserID: "b", Terms: []string{"common"}, Limit: 100}
	hits, _, err := r.SearchArchived(t.Context(), q)
	require.NoError(t, err)
	require.Empty(t, hits, "nothing trimmed: the window has it all")
	_, err = f.store.TrimArchived(t.Context(), time.Now(), 10)
	require.NoError(t, err)
	hits, more, err := r.SearchArchived(t.Context(), q)
	require.NoError(t, err)
	require.False(t, more)
	require.Len(t, hits, 10)
	for i, h := range hits {
		require.Equal(t, uint64(10-i), h.Message.Seq, "newest first")
	}
	q.UserID = "nobody"
	hits, _, err = r.SearchArchived(t.Context(), q)
	require.NoError(t, err)
	require.Empty(t, hits)
}
