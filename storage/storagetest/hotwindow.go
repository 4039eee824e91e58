package storagetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/parley-im/parley/storage"
)

// history is every message of c that reader sees in the store's own
// history, oldest first (one page).
func (f *fixture) history(c storage.Conversation, minSeq uint64) []uint64 {
	f.t.Helper()
	msgs, more, err := f.s.History(f.ctx(), storage.HistoryQuery{
		ConversationID: c.ID, Direction: storage.Before, Limit: 1000, MinSeq: minSeq,
	})
	require.NoError(f.t, err)
	require.False(f.t, more)
	return seqs(msgs)
}

func trim(t *testing.T, s ArchiveStore, cutoff time.Time, limit int) int {
	t.Helper()
	n, err := s.TrimArchived(t.Context(), cutoff, limit)
	require.NoError(t, err)
	return n
}

func archivedSeq(t *testing.T, s ArchiveStore, c storage.Conversation) uint64 {
	t.Helper()
	seq, err := s.ArchivedSeq(t.Context(), c.ID)
	require.NoError(t, err)
	return seq
}

// testTrimOnlyArchived: a trim passes only old messages with no outbox
// entry, as a prefix, never the newest; what it passes leaves History and
// search; a media message keeps granting access; ArchivedRanges follows
// join points.
func testTrimOnlyArchived(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	ctx := t.Context()
	enableArchive(t, s)
	a, b := f.user(), f.user()
	g, _ := f.group(a, b) // seq 1, at(0)
	media := storage.Media{ID: newID("media"), UploaderID: a.ID, BlobKey: newID("blob"), Size: 1,
		ContentType: "image/png", CreatedAt: at(0)}
	require.NoError(t, s.CreateMedia(ctx, media))
	pic := said(g, a, "alpha picture", 3)
	pic.Kind, pic.MediaID = storage.MessageImage, media.ID
	f.append(said(g, a, "alpha one", 1), said(g, b, "alpha two", 2), pic,
		said(g, b, "alpha three", 4), said(g, a, "alpha four", 5)) // seqs 2..6

	unread := func(u storage.User) uint64 {
		t.Helper()
		sums, err := s.ListConversations(ctx, u.ID)
		require.NoError(t, err)
		require.Len(t, sums, 1)
		return sums[0].Unread
	}
	require.Zero(t, trim(t, s, at(4), 100), "every message still waits for the archive")
	require.Zero(t, archivedSeq(t, s, g))

	drain(t, s, 100)
	// A recall enqueues seq 3 again (and its notice, seq 7).
	_, _, err := s.RecallMessage(ctx, g.ID, 3, f.notice(a, 6))
	require.NoError(t, err)
	require.Equal(t, 2, trim(t, s, at(4), 100), "seqs 1 and 2; seq 3 waits for the archive")
	require.Equal(t, uint64(2), archivedSeq(t, s, g))
	require.Equal(t, span(3, 7), f.history(g, 0))
	_, err = s.GetMessage(ctx, g.ID, 2)
	require.ErrorIs(t, err, storage.ErrNotFound)

	drain(t, s, 100)
	require.Equal(t, 1, trim(t, s, at(4), 1), "the limit holds")
	require.Equal(t, uint64(3), archivedSeq(t, s, g))
	require.Equal(t, 1, trim(t, s, at(4), 100), "the media message; seq 5 is not older than the cutoff")
	require.Equal(t, uint64(4), archivedSeq(t, s, g))
	require.Zero(t, trim(t, s, at(4), 100))
	require.Equal(t, span(5, 7), f.history(g, 0), "the media message left the history")
	for _, q := range []string{"alpha", "picture"} {
		var found []uint64
		for _, h := range f.search(b, q) {
			found = append(found, h.Message.Seq)
		}
		require.NotContains(t, found, uint64(4), q)
		require.NotContains(t, found, uint64(2), q)
	}
	ok, err := s.CanReadMedia(ctx, b.ID, media.ID)
	require.NoError(t, err)
	require.True(t, ok, "the media message's row still grants its members access")

	// Everything is old now, but the newest message stays; unread counts
	// do not change when the messages they count leave the store.
	unreadA, unreadB := unread(a), unread(b)
	require.Positive(t, unreadB, "b has not read a's newest messages")
	require.Equal(t, 2, trim(t, s, at(100), 100))
	require.Equal(t, unreadA, unread(a))
	require.Equal(t, unreadB, unread(b))
	require.Equal(t, uint64(6), archivedSeq(t, s, g))
	require.Equal(t, []uint64{7}, f.history(g, 0))
	sums, err := s.ListConversations(ctx, b.ID)
	require.NoError(t, err)
	require.Len(t, sums, 1)
	require.Equal(t, uint64(7), sums[0].LastMessage.Seq)

	// A member who joined after the boundary has nothing archived; one who
	// joined below it reads from the join point.
	late := f.user()
	_, err = s.AddMembers(ctx, g.ID, []string{late.ID}, 0, f.notice(a, 7)) // seq 8
	require.NoError(t, err)
	ranges, err := s.ArchivedRanges(ctx, b.ID, "")
	require.NoError(t, err)
	require.Equal(t, []storage.ArchivedRange{{ConversationID: g.ID, FromSeq: 1, ToSeq: 6}}, ranges)
	ranges, err = s.ArchivedRanges(ctx, late.ID, "")
	require.NoError(t, err)
	require.Empty(t, ranges)
	ranges, err = s.ArchivedRanges(ctx, b.ID, "other")
	require.NoError(t, err)
	require.Empty(t, ranges)
	seq, err := s.ArchivedSeq(ctx, "unknown")
	require.NoError(t, err)
	require.Zero(t, seq)
}

// testTrimLimit: one call moves up to limit messages over several
// conversations; repeated calls finish the job and then move nothing.
func testTrimLimit(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	enableArchive(t, s)
	a := f.user()
	var convs []storage.Conversation
	for range 3 {
		c := f.direct(a, f.user())
		f.send(c, a, 5) // at(10) each
		convs = append(convs, c)
	}
	drain(t, s, 100)
	require.Equal(t, 6, trim(t, s, at(11), 6))
	require.Equal(t, 6, trim(t, s, at(11), 6))
	require.Zero(t, trim(t, s, at(11), 6))
	for _, c := range convs {
		require.Equal(t, uint64(4), archivedSeq(t, s, c))
		require.Equal(t, []uint64{5}, f.history(c, 0))
	}
	ranges, err := s.ArchivedRanges(t.Context(), a.ID, "")
	require.NoError(t, err)
	require.Len(t, ranges, 3)
	ranges, err = s.ArchivedRanges(t.Context(), a.ID, convs[1].ID)
	require.NoError(t, err)
	require.Equal(t, []storage.ArchivedRange{{ConversationID: convs[1].ID, FromSeq: 1, ToSeq: 4}}, ranges)
}

// testTrimRefusedBeforeEnable: without the outbox nothing proves the
// archive has a message, so nothing is trimmed.
func testTrimRefusedBeforeEnable(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	a := f.user()
	c := f.direct(a, f.user())
	f.send(c, a, 3)
	_, err := s.TrimArchived(t.Context(), at(100), 10)
	require.ErrorIs(t, err, storage.ErrArchiveNotEnabled)
	require.Equal(t, span(1, 3), f.history(c, 0))
}

// testTrimRaces: trims run while recalls change old messages and an
// archiver drains the outbox. A trim must never pass a message whose
// current state the archive does not have: at the end, every message at
// or below a boundary is in the archive in its final state (recalled if
// its recall succeeded), and every message above it is in the store.
func testTrimRaces(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	ctx := t.Context()
	enableArchive(t, s)
	a := f.user()
	var convs []storage.Conversation
	for range 4 {
		c := f.direct(a, f.user())
		f.send(c, a, 40) // at(10)
		convs = append(convs, c)
	}

	var (
		mu       sync.Mutex
		archived = map[storage.MessageKey]storage.Message{}
		recalled = map[storage.MessageKey]bool{}
	)
	drainOnce := func() (int, error) {
		es, err := s.ReadOutbox(ctx, 25)
		if err != nil || len(es) == 0 {
			return 0, err
		}
		recs, err := s.LoadMessages(ctx, keysOf(es))
		if err != nil {
			return 0, err
		}
		mu.Lock()
		for _, r := range recs {
			archived[keyOf(r.Message)] = r.Message
		}
		mu.Unlock()
		ids := make([]int64, len(es))
		for i, e := range es {
			ids[i] = e.ID
		}
		return len(es), s.AckOutbox(ctx, ids)
	}

	stop := make(chan struct{})
	var g errgroup.Group
	g.Go(func() error { // the archiver
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			if _, err := drainOnce(); err != nil {
				return err
			}
		}
	})
	g.Go(func() error { // the trimmer
		for {
			select {
			case <-stop:
				return nil
			default:
			}
			if _, err := s.TrimArchived(ctx, at(1000), 7); err != nil {
				return err
			}
		}
	})
	// Recalls, oldest messages first, racing the trimmer for them.
	for seq := uint64(1); seq <= 30; seq += 3 {
		for _, c := range convs {
			_, _, err := s.RecallMessage(ctx, c.ID, seq, f.notice(a, 20))
			switch {
			case err == nil:
				recalled[storage.MessageKey{ConversationID: c.ID, Seq: seq}] = true
			case errors.Is(err, storage.ErrNotFound):
				// Trimmed first.
			default:
				require.NoError(t, err)
			}
		}
	}
	close(stop)
	require.NoError(t, g.Wait())
	for {
		n, err := drainOnce()
		require.NoError(t, err)
		if n == 0 {
			break
		}
	}
	for n := 1; n > 0; {
		n = trim(t, s, at(1000), 100)
	}

	trimmedAny := false
	for _, c := range convs {
		boundary := archivedSeq(t, s, c)
		conv, err := s.GetConversation(ctx, c.ID)
		require.NoError(t, err)
		require.Equal(t, conv.LastSeq-1, boundary, "everything but the newest is old enough")
		trimmedAny = trimmedAny || boundary > 0
		for seq := uint64(1); seq <= boundary; seq++ {
			k := storage.MessageKey{ConversationID: c.ID, Seq: seq}
			m, ok := archived[k]
			require.True(t, ok, "seq %d of %s left the store without reaching the archive", seq, c.ID)
			require.Equal(t, recalled[k], !m.RecalledAt.IsZero(), "seq %d of %s: the archive has a stale state", seq, c.ID)
		}
		require.Equal(t, span(boundary+1, conv.LastSeq), f.history(c, 0))
	}
	require.True(t, trimmedAny)
}

// testDisableArchive: switching the archive off empties the outbox and
// stops the triggers; switching it on again starts over with a backfill;
// once history has left the store, it cannot be switched off.
func testDisableArchive(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	ctx := t.Context()
	a := f.user()
	c := f.direct(a, f.user())
	require.NoError(t, s.DisableArchive(ctx), "never enabled: nothing to do")
	enableArchive(t, s)
	f.send(c, a, 3)
	require.NoError(t, s.DisableArchive(ctx))
	require.NoError(t, s.DisableArchive(ctx), "idempotent")
	f.send(c, a, 2)
	es, err := s.ReadOutbox(ctx, 100)
	require.NoError(t, err)
	require.Empty(t, es, "emptied, and nothing enqueued while off")
	_, err = s.TrimArchived(ctx, at(1000), 100)
	require.ErrorIs(t, err, storage.ErrArchiveNotEnabled, "no trims while off")

	enableArchive(t, s)
	require.Equal(t, span(1, 5), seqsOfKeys(keysOf(drain(t, s, 100))), "the backfill starts over")
	require.Equal(t, 4, trim(t, s, at(1000), 100))
	err = s.DisableArchive(ctx)
	require.ErrorIs(t, err, storage.ErrConflict)
	require.ErrorIs(t, err, storage.ErrHistoryArchived)
	f.send(c, a, 1)
	es, err = s.ReadOutbox(ctx, 100)
	require.NoError(t, err)
	require.Len(t, es, 1, "still on")
}

func seqsOfKeys(keys []storage.MessageKey) []uint64 {
	out := make([]uint64, len(keys))
	for i, k := range keys {
		out[i] = k.Seq
	}
	return out
}
