package storagetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// membersSeqTests check storage.Message.MembersSeq: the seq of the newest
// membership change a message was committed under.
var membersSeqTests = []test{
	{"direct_is_zero", testMembersSeqDirect},
	{"follows_membership_changes", testMembersSeqChanges},
	{"duplicates_carry_current", testMembersSeqDuplicates},
	{"exact_under_concurrent_changes", testMembersSeqConcurrent},
}

func testMembersSeqDirect(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)

	for _, m := range f.append(text(d, a, "1"), text(d, b, "2")) {
		require.Zero(t, m.MembersSeq, "seq %d: a direct conversation's membership never changes", m.Seq)
	}
	_, n, err := s.RecallMessage(f.ctx(), d.ID, 1, f.notice(a, 20))
	require.NoError(t, err)
	require.Zero(t, n.MembersSeq, "a recall notice is no membership change")
	require.Zero(t, f.append(text(d, a, "3"))[0].MembersSeq)
}

func testMembersSeqChanges(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c, d := f.user(), f.user(), f.user(), f.user()
	g, created := f.group(owner, b)
	direct := f.direct(owner, d)
	require.Equal(t, uint64(1), created.MembersSeq, "the creation notice is the first change")

	before := f.append(text(g, owner, "before"))[0] // seq 2
	require.Equal(t, uint64(1), before.MembersSeq)

	added, err := s.AddMembers(f.ctx(), g.ID, []string{c.ID}, 10, f.notice(owner, 20)) // seq 3
	require.NoError(t, err)
	require.Equal(t, added.Seq, added.MembersSeq, "a membership notice carries its own seq")

	// A batch over two conversations: each message carries its own
	// conversation's value.
	batch := f.append(text(g, c, "after add"), text(direct, d, "elsewhere"), text(g, owner, "again"))
	require.Equal(t, []uint64{added.Seq, 0, added.Seq},
		[]uint64{batch[0].MembersSeq, batch[1].MembersSeq, batch[2].MembersSeq})
	require.Equal(t, uint64(1), before.MembersSeq, "one appended before carries the earlier change")

	_, recall, err := s.RecallMessage(f.ctx(), g.ID, before.Seq, f.notice(owner, 30))
	require.NoError(t, err)
	require.Equal(t, added.Seq, recall.MembersSeq, "a recall notice is no membership change")

	removed, err := s.RemoveMember(f.ctx(), g.ID, b.ID, f.notice(owner, 40))
	require.NoError(t, err)
	require.Equal(t, removed.Seq, removed.MembersSeq)
	require.Equal(t, removed.Seq, f.append(text(g, c, "after remove"))[0].MembersSeq)

	// Leaving is a removal of oneself.
	left, err := s.RemoveMember(f.ctx(), g.ID, c.ID, f.notice(c, 50))
	require.NoError(t, err)
	require.Equal(t, left.Seq, left.MembersSeq)
	require.Equal(t, left.Seq, f.append(text(g, owner, "after leave"))[0].MembersSeq)

	// A failed change changes nothing.
	_, err = s.AddMembers(f.ctx(), g.ID, []string{owner.ID}, 10, f.notice(owner, 60))
	require.ErrorIs(t, err, storage.ErrConflict)
	_, err = s.RemoveMember(f.ctx(), g.ID, b.ID, f.notice(owner, 60))
	require.ErrorIs(t, err, storage.ErrNotMember)
	require.Equal(t, left.Seq, f.append(text(g, owner, "still"))[0].MembersSeq)
}

func testMembersSeqDuplicates(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c := f.user(), f.user(), f.user()
	g, _ := f.group(owner, b)

	orig := text(g, b, "once")
	first := f.append(orig)[0]
	require.Equal(t, uint64(1), first.MembersSeq)
	added, err := s.AddMembers(f.ctx(), g.ID, []string{c.ID}, 10, f.notice(owner, 20))
	require.NoError(t, err)

	// A retry, twice in one batch, after the change: the original under
	// the current membership, for both.
	retry := orig
	retry.ID = newID("msg")
	again := orig
	again.ID = newID("msg")
	res, err := s.AppendMessages(f.ctx(), []storage.NewMessage{retry, text(g, owner, "new"), again})
	require.NoError(t, err)
	want := first
	want.MembersSeq = added.Seq
	for _, i := range []int{0, 2} {
		require.NoError(t, res[i].Err)
		require.True(t, res[i].Duplicate)
		require.Equal(t, want, res[i].Message, "result %d", i)
	}
	require.Equal(t, added.Seq, res[1].Message.MembersSeq)
}

// testMembersSeqConcurrent appends to a group while its membership keeps
// changing: every message must carry exactly the newest change committed
// before it, so the value is read under the lock that orders the seqs.
func testMembersSeqConcurrent(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, x := f.user(), f.user(), f.user()
	g, created := f.group(owner, b)

	const (
		batches   = 40
		batchSize = 5
		changes   = 30
	)
	var (
		wg       sync.WaitGroup
		sent     = make(chan []storage.AppendResult, 2*batches)
		notices  = make(chan storage.Message, changes)
		failures = make(chan error, 3)
	)
	for _, u := range []storage.User{owner, b} {
		wg.Go(func() {
			for i := range batches {
				msgs := make([]storage.NewMessage, batchSize)
				for j := range msgs {
					msgs[j] = text(g, u, fmt.Sprintf("%d.%d", i, j))
				}
				res, err := s.AppendMessages(f.ctx(), msgs)
				if err != nil {
					failures <- err
					return
				}
				sent <- res
			}
		})
	}
	changeNotices := make([]storage.NewMessage, changes)
	for i := range changeNotices {
		changeNotices[i] = f.notice(owner, i)
	}
	wg.Go(func() {
		for i, notice := range changeNotices {
			var (
				n   storage.Message
				err error
			)
			if i%2 == 0 {
				n, err = s.AddMembers(f.ctx(), g.ID, []string{x.ID}, 10, notice)
			} else {
				n, err = s.RemoveMember(f.ctx(), g.ID, x.ID, notice)
			}
			if err != nil {
				failures <- err
				return
			}
			notices <- n
		}
	})
	wg.Wait()
	close(failures)
	close(sent)
	close(notices)
	for err := range failures {
		require.NoError(t, err)
	}

	changed := []uint64{created.Seq}
	for n := range notices {
		require.Equal(t, n.Seq, n.MembersSeq)
		changed = append(changed, n.Seq)
	}
	slices.Sort(changed)
	count := 0
	for res := range sent {
		for _, r := range res {
			require.NoError(t, r.Err)
			// The newest change below the message's seq.
			i, _ := slices.BinarySearch(changed, r.Message.Seq)
			require.Equal(t, changed[i-1], r.Message.MembersSeq, "message at seq %d", r.Message.Seq)
			count++
		}
	}
	require.Equal(t, 2*batches*batchSize, count)
}
