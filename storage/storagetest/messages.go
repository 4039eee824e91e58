package storagetest

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var messageTests = []test{
	{"append_assigns_seq", testAppendAssignsSeq},
	{"concurrent_senders_gapless", testConcurrentSenders},
	{"idempotent_across_batches", testIdempotentAcrossBatches},
	{"idempotent_within_batch", testIdempotentWithinBatch},
	{"idempotency_key_scope", testIdempotencyKeyScope},
	{"idempotent_after_leaving", testIdempotentAfterLeaving},
	{"not_member_fails_only_its_message", testNotMember},
	{"sender_read_advances", testSenderReadAdvances},
	{"get_message_not_found", testGetMessageNotFound},
	{"recall", testRecall},
	{"recall_conflicts", testRecallConflicts},
}

func testAppendAssignsSeq(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)

	in := []storage.NewMessage{
		withTime(text(d, a, "one"), at(10)),
		withTime(text(d, b, "two"), at(11)),
		withTime(text(d, a, "three"), at(12)),
	}
	res, err := s.AppendMessages(f.ctx(), in)
	require.NoError(t, err)
	require.Len(t, res, 3)
	for i, r := range res {
		require.NoError(t, r.Err)
		require.False(t, r.Duplicate)
		require.Equal(t, committed(in[i], uint64(i+1)), r.Message, "results follow the input order")

		got, err := s.GetMessage(f.ctx(), d.ID, uint64(i+1))
		require.NoError(t, err)
		require.Equal(t, r.Message, got)
	}

	c, err := s.GetConversation(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(3), c.LastSeq)
	require.Equal(t, at(12), c.LastMessageAt)

	// The next batch continues where this one ended.
	next := f.append(text(d, b, "four"))
	require.Equal(t, uint64(4), next[0].Seq)

	// An empty batch is fine and commits nothing.
	res, err = s.AppendMessages(f.ctx(), nil)
	require.NoError(t, err)
	require.Empty(t, res)
}

func testConcurrentSenders(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	us := f.users(8)
	g, _ := f.group(us[0], us[1:]...)

	const perSender = 200
	errs := make(chan error, len(us))
	var wg sync.WaitGroup
	for i, u := range us {
		wg.Go(func() {
			// Even senders append one message per call, odd ones batches
			// of 10; batches interleave with single appends.
			batch := 1
			if i%2 == 1 {
				batch = 10
			}
			for sent := 0; sent < perSender; sent += batch {
				msgs := make([]storage.NewMessage, batch)
				for j := range msgs {
					msgs[j] = text(g, u, fmt.Sprintf("%d", sent+j))
				}
				res, err := s.AppendMessages(f.ctx(), msgs)
				if err != nil {
					errs <- err
					return
				}
				for j, r := range res {
					if r.Err != nil {
						errs <- r.Err
						return
					}
					if j > 0 && r.Message.Seq <= res[j-1].Message.Seq {
						errs <- fmt.Errorf("batch seqs out of order: %d after %d", r.Message.Seq, res[j-1].Message.Seq)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	total := uint64(1 + len(us)*perSender) // the notice, then the sends
	c, err := s.GetConversation(f.ctx(), g.ID)
	require.NoError(t, err)
	require.Equal(t, total, c.LastSeq)

	msgs, more, err := s.History(f.ctx(), storage.HistoryQuery{
		ConversationID: g.ID, Direction: storage.After, Limit: int(total) + 10,
	})
	require.NoError(t, err)
	require.False(t, more)
	require.Equal(t, span(1, total), seqs(msgs), "exactly 1..N: no gaps, no duplicates")
	ids := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		require.False(t, ids[m.ID], "message %s stored twice", m.ID)
		ids[m.ID] = true
	}
}

func testIdempotentAcrossBatches(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)

	orig := text(d, a, "once")
	first := f.append(orig)[0]

	// A retry after a reconnect: a new message id, the same client_msg_id.
	retry := text(d, a, "once, again")
	retry.ClientMsgID = orig.ClientMsgID
	res, err := s.AppendMessages(f.ctx(), []storage.NewMessage{retry, text(d, b, "other")})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.True(t, res[0].Duplicate)
	require.Equal(t, first, res[0].Message, "the original comes back")
	require.False(t, res[1].Duplicate)
	require.Equal(t, uint64(2), res[1].Message.Seq, "the duplicate took no seq")

	_, err = s.GetMessage(f.ctx(), d.ID, 3)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testIdempotentWithinBatch(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)

	m1 := text(d, a, "first")
	m2 := text(d, a, "second copy")
	m2.ClientMsgID = m1.ClientMsgID
	m3 := text(d, a, "third")

	res, err := s.AppendMessages(f.ctx(), []storage.NewMessage{m1, m2, m3})
	require.NoError(t, err)
	require.False(t, res[0].Duplicate)
	require.Equal(t, committed(m1, 1), res[0].Message)
	require.True(t, res[1].Duplicate)
	require.Equal(t, res[0].Message, res[1].Message, "a duplicate in the batch yields the first")
	require.Equal(t, committed(m3, 2), res[2].Message)

	c, err := s.GetConversation(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(2), c.LastSeq)
}

func testIdempotencyKeyScope(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, c := f.user(), f.user(), f.user()
	d1 := f.direct(a, b)
	d2 := f.direct(a, c)
	g, _ := f.group(a, b)

	// The same client_msg_id in another conversation, or from another
	// sender, is another message.
	m1 := text(d1, a, "x")
	m2 := text(d2, a, "x")
	m2.ClientMsgID = m1.ClientMsgID
	m3 := text(g, a, "x")
	m3.ClientMsgID = m1.ClientMsgID
	m4 := text(g, b, "x")
	m4.ClientMsgID = m1.ClientMsgID
	// Messages without a client_msg_id are never duplicates.
	s1 := f.notice(a, 3)
	s1.ConversationID = g.ID
	s2 := f.notice(a, 3)
	s2.ConversationID = g.ID

	res, err := s.AppendMessages(f.ctx(), []storage.NewMessage{m1, m2, m3, m4, s1, s2})
	require.NoError(t, err)
	for i, r := range res {
		require.NoError(t, r.Err)
		require.False(t, r.Duplicate, "message %d", i)
	}
	require.Equal(t, []uint64{1, 1, 2, 3, 4, 5}, seqs([]storage.Message{
		res[0].Message, res[1].Message, res[2].Message, res[3].Message, res[4].Message, res[5].Message,
	}))
}

func testNotMember(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, stranger := f.user(), f.user(), f.user()
	d := f.direct(a, b)

	unknown := text(d, a, "nowhere")
	unknown.ConversationID = "nothing"
	intruder := text(d, stranger, "let me in")
	res, err := s.AppendMessages(f.ctx(), []storage.NewMessage{
		text(d, a, "1"), intruder, text(d, b, "2"), unknown,
	})
	require.NoError(t, err, "a non-member fails only its own message")
	require.Len(t, res, 4)
	require.NoError(t, res[0].Err)
	require.Equal(t, uint64(1), res[0].Message.Seq)
	require.ErrorIs(t, res[1].Err, storage.ErrNotMember)
	require.Equal(t, storage.Message{}, res[1].Message)
	require.NoError(t, res[2].Err)
	require.Equal(t, uint64(2), res[2].Message.Seq)
	require.ErrorIs(t, res[3].Err, storage.ErrNotMember, "an unknown conversation")

	// The refused message left nothing behind, not even its key.
	intruder.ID = newID("msg")
	res, err = s.AppendMessages(f.ctx(), []storage.NewMessage{intruder})
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, storage.ErrNotMember)
	require.False(t, res[0].Duplicate)
}

func testSenderReadAdvances(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c := f.user(), f.user(), f.user()
	g, _ := f.group(owner, b, c)

	f.append(text(g, b, "1"), text(g, c, "2"), text(g, b, "3"), text(g, c, "4")) // seqs 2..5

	for _, tc := range []struct {
		user storage.User
		want uint64
	}{
		{owner, 1}, // the notice is the owner's
		{b, 4},
		{c, 5},
	} {
		m, err := s.GetMember(f.ctx(), g.ID, tc.user.ID)
		require.NoError(t, err)
		require.Equal(t, tc.want, m.LastReadSeq, "user %s", tc.user.ID)
	}
}

func testGetMessageNotFound(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	f.send(d, a, 1)

	_, err := s.GetMessage(f.ctx(), d.ID, 2)
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.GetMessage(f.ctx(), "nothing", 1)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testRecall(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	sent := f.send(d, a, 2)

	notice := f.notice(a, 60)
	recalled, n, err := s.RecallMessage(f.ctx(), d.ID, 1, notice)
	require.NoError(t, err)
	want := sent[0]
	want.Body = nil
	want.RecalledAt = at(60)
	require.Equal(t, want, recalled)
	notice.ConversationID = d.ID
	require.Equal(t, committed(notice, 3), n, "the notice takes the next seq")

	got, err := s.GetMessage(f.ctx(), d.ID, 1)
	require.NoError(t, err)
	require.Equal(t, want, got)

	page, _, err := s.History(f.ctx(), storage.HistoryQuery{ConversationID: d.ID, Direction: storage.After, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []storage.Message{want, sent[1], n}, page)

	c, err := s.GetConversation(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(3), c.LastSeq)
}

func testRecallConflicts(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b := f.user(), f.user()
	g, _ := f.group(owner, b)
	f.send(g, b, 1) // seq 2

	_, _, err := s.RecallMessage(f.ctx(), g.ID, 2, f.notice(b, 60))
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		seq  uint64
		want error
	}{
		{"already_recalled", 2, storage.ErrConflict},
		{"system_message", 1, storage.ErrConflict},
		{"unknown_seq", 99, storage.ErrNotFound},
	} {
		_, _, err := s.RecallMessage(f.ctx(), g.ID, tc.seq, f.notice(b, 61))
		require.ErrorIs(t, err, tc.want, tc.name)
	}
	_, _, err = s.RecallMessage(f.ctx(), "nothing", 1, f.notice(b, 61))
	require.ErrorIs(t, err, storage.ErrNotFound)

	c, err := s.GetConversation(f.ctx(), g.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(3), c.LastSeq, "failed recalls append no notice")
}

func testIdempotentAfterLeaving(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b := f.user(), f.user()
	g, _ := f.group(owner, b)

	orig := text(g, b, "sent before leaving")
	first := f.append(orig)[0]
	left, err := s.RemoveMember(f.ctx(), g.ID, b.ID, f.notice(b, 30))
	require.NoError(t, err)

	// The ack was lost; the client retries after it left. The message was
	// committed, so the retry gets it back rather than a refusal.
	retry := orig
	retry.ID = newID("msg")
	res, err := s.AppendMessages(f.ctx(), []storage.NewMessage{retry, text(g, b, "new")})
	require.NoError(t, err)
	require.NoError(t, res[0].Err)
	require.True(t, res[0].Duplicate)
	want := first
	want.MembersSeq = left.Seq
	require.Equal(t, want, res[0].Message, "the original, under the current membership")
	require.ErrorIs(t, res[1].Err, storage.ErrNotMember)
}
