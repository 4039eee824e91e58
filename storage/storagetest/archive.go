package storagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// ArchiveStore is a store that feeds the message archive: the system of
// record with its outbox and leases.
type ArchiveStore interface {
	storage.Store
	storage.ArchiveOutbox
	storage.LeaseStore
	storage.HotWindow
}

// archiveTest is one conformance test of ArchiveStore.
type archiveTest struct {
	name string
	fn   func(t *testing.T, s ArchiveStore)
}

var archiveTests = []archiveTest{
	{"disabled_enqueues_nothing_enable_backfills", testOutboxEnableBackfills},
	{"every_change_enqueued", testOutboxEveryChange},
	{"ack_removes_exactly_the_read_entries", testOutboxAck},
	{"concurrent_drain_skips_nothing", testOutboxConcurrentDrain},
	{"lease", testLease},
	{"lease_expires", testLeaseExpires},
	{"trim_only_what_the_archive_holds", testTrimOnlyArchived},
	{"trim_limit_spans_conversations", testTrimLimit},
	{"trim_refused_before_enable", testTrimRefusedBeforeEnable},
	{"trim_races_recalls_and_the_archiver", testTrimRaces},
	{"disable", testDisableArchive},
}

// RunArchive runs the conformance suite of storage.ArchiveOutbox and
// storage.LeaseStore. newStore must return a fresh, empty store for each
// call, as for Run; RunArchive closes it when its subtest ends.
func RunArchive(t *testing.T, newStore func(t *testing.T) ArchiveStore) {
	for _, tc := range archiveTests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// drain reads and acks the whole outbox, limit entries at a time, and
// returns the entries in the order read.
func drain(t *testing.T, s ArchiveStore, limit int) []storage.OutboxEntry {
	t.Helper()
	var all []storage.OutboxEntry
	for {
		es, err := s.ReadOutbox(t.Context(), limit)
		require.NoError(t, err)
		if len(es) == 0 {
			return all
		}
		require.LessOrEqual(t, len(es), limit)
		ids := make([]int64, len(es))
		for i, e := range es {
			ids[i] = e.ID
		}
		require.NoError(t, s.AckOutbox(t.Context(), ids))
		all = append(all, es...)
	}
}

func keysOf(es []storage.OutboxEntry) []storage.MessageKey {
	ks := make([]storage.MessageKey, len(es))
	for i, e := range es {
		ks[i] = e.Key
	}
	return ks
}

func keyOf(m storage.Message) storage.MessageKey {
	return storage.MessageKey{ConversationID: m.ConversationID, Seq: m.Seq}
}

// testOutboxEnableBackfills: before EnableArchive nothing is enqueued
// and there is no backfill; enabling enqueues nothing by itself (so it is
// quick) but later appends at once; the backfill then enqueues every
// message in pages, in key order, and is done once it runs out; trims
// wait for it; a second enable changes nothing.
func testOutboxEnableBackfills(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	ctx := t.Context()
	a, b := f.user(), f.user()
	c := f.direct(a, b)
	before := f.send(c, a, 3)
	es, err := s.ReadOutbox(ctx, 100)
	require.NoError(t, err)
	require.Empty(t, es)
	n, done, err := s.BackfillOutbox(ctx, 10)
	require.NoError(t, err)
	require.Zero(t, n)
	require.False(t, done, "no backfill before the archive is enabled")

	require.NoError(t, s.EnableArchive(ctx))
	es, err = s.ReadOutbox(ctx, 100)
	require.NoError(t, err)
	require.Empty(t, es, "enabling enqueues nothing itself")
	require.NoError(t, s.EnableArchive(ctx))
	after := f.send(c, b, 2)
	require.Equal(t, []storage.MessageKey{keyOf(after[0]), keyOf(after[1])}, keysOf(drain(t, s, 100)))
	moved, err := s.TrimArchived(ctx, at(1000), 100)
	require.NoError(t, err)
	require.Zero(t, moved, "nothing is trimmed before the backfill is done")

	var pages []int
	for {
		n, done, err := s.BackfillOutbox(ctx, 2)
		require.NoError(t, err)
		pages = append(pages, n)
		if done {
			break
		}
		require.Less(t, len(pages), 10, "the backfill ends")
	}
	require.Equal(t, []int{2, 2, 1}, pages, "every message of the conversation, in pages")
	var want []storage.MessageKey
	for _, m := range append(before, after...) {
		want = append(want, keyOf(m))
	}
	require.Equal(t, want, keysOf(drain(t, s, 100)), "in key order")
	n, done, err = s.BackfillOutbox(ctx, 2)
	require.NoError(t, err)
	require.Zero(t, n)
	require.True(t, done)
	require.NoError(t, s.EnableArchive(ctx))
	n, done, err = s.BackfillOutbox(ctx, 2)
	require.NoError(t, err)
	require.True(t, done && n == 0, "a second enable does not restart the backfill")
	moved, err = s.TrimArchived(ctx, at(1000), 100)
	require.NoError(t, err)
	require.Equal(t, 4, moved, "now the trim runs")
}

// enableArchive enables the archive outbox and runs its backfill to the
// end.
func enableArchive(t testing.TB, s ArchiveStore) {
	t.Helper()
	require.NoError(t, s.EnableArchive(t.Context()))
	for {
		_, done, err := s.BackfillOutbox(t.Context(), 1000)
		require.NoError(t, err)
		if done {
			return
		}
	}
}

// testOutboxEveryChange: appends, group notices and a recall each enqueue
// their message; LoadMessages returns the current state (the recall
// without its body).
func testOutboxEveryChange(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	ctx := t.Context()
	require.NoError(t, s.EnableArchive(ctx))
	a, b, x := f.user(), f.user(), f.user()
	g, created := f.group(a, b)
	sent := f.append(said(g, a, "one", 1), said(g, b, "two", 2))
	added, err := s.AddMembers(ctx, g.ID, []string{x.ID}, 0, f.notice(a, 1))
	require.NoError(t, err)
	_, recallNotice, err := s.RecallMessage(ctx, g.ID, sent[0].Seq, f.notice(a, 2))
	require.NoError(t, err)

	es := drain(t, s, 2)
	for i := 1; i < len(es); i++ {
		require.Less(t, es[i-1].ID, es[i].ID, "entries come oldest first")
	}
	require.Equal(t, []storage.MessageKey{
		keyOf(created), keyOf(sent[0]), keyOf(sent[1]), keyOf(added), keyOf(sent[0]), keyOf(recallNotice),
	}, keysOf(es))
	for _, e := range es {
		require.False(t, e.EnqueuedAt.IsZero())
	}

	recs, err := s.LoadMessages(ctx, append(keysOf(es), storage.MessageKey{ConversationID: g.ID, Seq: 999}))
	require.NoError(t, err)
	require.Len(t, recs, 5, "each message once; unknown keys skipped")
	for _, r := range recs {
		m := r.Message
		want, err := s.GetMessage(ctx, m.ConversationID, m.Seq)
		require.NoError(t, err)
		require.Equal(t, want, m)
		switch m.Seq {
		case sent[0].Seq:
			require.Nil(t, m.Body)
			require.False(t, m.RecalledAt.IsZero())
			require.Empty(t, r.SearchText, "a recall takes the text out of the archive too")
		case sent[1].Seq:
			require.Equal(t, "two", r.SearchText)
		default:
			require.Empty(t, r.SearchText, "notices have no text")
		}
	}
}

// testOutboxAck: reading removes nothing; AckOutbox removes exactly the
// ids given (unknown ones ignored); OutboxLag counts what is left.
func testOutboxAck(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	ctx := t.Context()
	require.NoError(t, s.EnableArchive(ctx))
	n, oldest, err := s.OutboxLag(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	require.True(t, oldest.IsZero())

	a, b := f.user(), f.user()
	c := f.direct(a, b)
	sent := f.send(c, a, 5)
	first, err := s.ReadOutbox(ctx, 3)
	require.NoError(t, err)
	again, err := s.ReadOutbox(ctx, 3)
	require.NoError(t, err)
	require.Equal(t, first, again)
	require.Equal(t, []storage.MessageKey{keyOf(sent[0]), keyOf(sent[1]), keyOf(sent[2])}, keysOf(first))

	n, oldest, err = s.OutboxLag(ctx)
	require.NoError(t, err)
	require.Equal(t, 5, n)
	require.Equal(t, first[0].EnqueuedAt, oldest)

	require.NoError(t, s.AckOutbox(ctx, []int64{first[0].ID, first[2].ID, first[2].ID + 1_000_000}))
	rest := drain(t, s, 10)
	require.Equal(t, []storage.MessageKey{keyOf(sent[1]), keyOf(sent[3]), keyOf(sent[4])}, keysOf(rest))
	n, _, err = s.OutboxLag(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
}

// testOutboxConcurrentDrain: writers append in several conversations at
// once while a reader drains the outbox in small batches; once the
// writers are done and the outbox is empty, the reader has seen every
// committed message, each exactly once.
func testOutboxConcurrentDrain(t *testing.T, s ArchiveStore) {
	f := newFixture(t, s)
	ctx := t.Context()
	require.NoError(t, s.EnableArchive(ctx))
	const writers, batches, batch = 4, 25, 4
	convs := make([]storage.Conversation, writers)
	users := make([]storage.User, writers)
	owner := f.user()
	for i := range convs {
		users[i] = f.user()
		convs[i] = f.direct(owner, users[i])
	}

	var (
		wg        sync.WaitGroup
		mu        sync.Mutex
		committed []storage.MessageKey
		errs      = make(chan error, writers)
		done      = make(chan struct{})
	)
	for w := range writers {
		wg.Go(func() {
			for i := range batches {
				msgs := make([]storage.NewMessage, batch)
				for j := range msgs {
					// Alternate conversations so that transactions
					// overlap in the same and in different conversations.
					c := convs[(w+i+j)%writers]
					msgs[j] = text(c, owner, fmt.Sprintf("w%d %d.%d", w, i, j))
				}
				res, err := s.AppendMessages(ctx, msgs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, r := range res {
					committed = append(committed, keyOf(r.Message))
				}
				mu.Unlock()
			}
		})
	}
	go func() { wg.Wait(); close(done) }()

	seen := make(map[storage.MessageKey]int)
	read := func() int {
		es, err := s.ReadOutbox(ctx, 7)
		require.NoError(t, err)
		ids := make([]int64, len(es))
		for i, e := range es {
			seen[e.Key]++
			ids[i] = e.ID
		}
		require.NoError(t, s.AckOutbox(ctx, ids))
		return len(es)
	}
	for writing := true; writing; {
		select {
		case <-done:
			writing = false
		default:
			read()
		}
	}
	for read() > 0 {
	}
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, committed, writers*batches*batch)
	for _, k := range committed {
		require.Equal(t, 1, seen[k], "message %v", k)
	}
	require.Len(t, seen, len(committed))
}

// testLease: one holder at a time; renewal by the holder; release frees
// it at once.
func testLease(t *testing.T, s ArchiveStore) {
	ctx := t.Context()
	const ttl = time.Hour
	ok, err := s.AcquireLease(ctx, "archive", "a", ttl)
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = s.AcquireLease(ctx, "archive", "b", ttl)
	require.NoError(t, err)
	require.False(t, ok, "a holds it")
	ok, err = s.AcquireLease(ctx, "other", "b", ttl)
	require.NoError(t, err)
	require.True(t, ok, "leases are per name")
	ok, err = s.AcquireLease(ctx, "archive", "a", ttl)
	require.NoError(t, err)
	require.True(t, ok, "renewal")

	require.NoError(t, s.ReleaseLease(ctx, "archive", "b"), "not b's: a no-op")
	ok, err = s.AcquireLease(ctx, "archive", "b", ttl)
	require.NoError(t, err)
	require.False(t, ok)
	require.NoError(t, s.ReleaseLease(ctx, "archive", "a"))
	ok, err = s.AcquireLease(ctx, "archive", "b", ttl)
	require.NoError(t, err)
	require.True(t, ok, "released")
	ok, err = s.AcquireLease(ctx, "archive", "a", ttl)
	require.NoError(t, err)
	require.False(t, ok)
}

// testLeaseExpires: a lease that is not renewed passes to another holder
// once its ttl is over, and not before.
func testLeaseExpires(t *testing.T, s ArchiveStore) {
	ctx := t.Context()
	const ttl = 200 * time.Millisecond
	start := time.Now()
	ok, err := s.AcquireLease(ctx, "archive", "a", ttl)
	require.NoError(t, err)
	require.True(t, ok)
	var tookAt time.Time
	require.Eventually(t, func() bool {
		ok, err := s.AcquireLease(context.WithoutCancel(ctx), "archive", "b", time.Hour)
		if err != nil || !ok {
			return false
		}
		tookAt = time.Now()
		return true
	}, 10*time.Second, 10*time.Millisecond)
	require.GreaterOrEqual(t, tookAt.Sub(start), ttl-5*time.Millisecond, "taken before the ttl was over")
	ok, err = s.AcquireLease(ctx, "archive", "a", ttl)
	require.NoError(t, err)
	require.False(t, ok)
}
