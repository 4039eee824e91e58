package e2e_test

import (
	"fmt"
	"sync"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// TestFanOut: in a direct chat and a group, every device of every member,
// the sender's own devices included, gets every message once, in order.
func TestFanOut(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	alice := newUser(t, p.URL(), "alice", 2)
	bob := newUser(t, p.URL(), "bob", 2)
	carol := newUser(t, p.URL(), "carol", 2)
	users := []*user{alice, bob, carol}
	for _, u := range users {
		for _, d := range u.devices {
			d.connect(t)
		}
	}
	dm := createDirect(t, alice, bob)
	group := createGroup(t, alice, "friends", bob, carol)

	const perSender = 10
	type plan struct {
		sender *device
		conv   string
	}
	plans := []plan{
		{alice.dev(0), dm}, {bob.dev(1), dm},
		{alice.dev(1), group}, {bob.dev(0), group}, {carol.dev(0), group}, {carol.dev(1), group},
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(plans)*perSender)
	for _, pl := range plans {
		wg.Go(func() {
			for i := range perSender {
				m, err := pl.sender.session.Send(t.Context(), pl.conv, text(fmt.Sprintf("%s #%d", pl.sender.name, i)))
				if err == nil && m.GetSenderDeviceId() != pl.sender.client.DeviceID() {
					err = fmt.Errorf("sender device %s, want %s", m.GetSenderDeviceId(), pl.sender.client.DeviceID())
				}
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	tests := []struct {
		name    string
		conv    string
		members []*user
	}{
		{name: "direct", conv: dm, members: []*user{alice, bob}},
		{name: "group", conv: group, members: []*user{alice, bob, carol}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := history(t, alice.client(), tt.conv)
			last := want[len(want)-1].GetSeq()
			texts := 0
			for _, m := range want {
				if m.GetKind() == parleyv1.MessageKind_MESSAGE_KIND_TEXT {
					texts++
				}
			}
			require.Equal(t, perSender*countConv(tt.conv, plans, func(p plan) string { return p.conv }), texts)
			requireContiguous(t, want, 1, "history has no gaps")
			for _, u := range tt.members {
				requireSameMessages(t, want, history(t, u.client(), tt.conv), "%s's history", u.name)
				for _, d := range u.devices {
					d.rec.waitSeq(t, tt.conv, last)
					requireSameMessages(t, want, d.rec.messages(tt.conv), "delivered to %s", d.name)
				}
			}
		})
	}
	t.Run("non_member_gets_nothing", func(t *testing.T) {
		for _, d := range carol.devices {
			require.Empty(t, d.rec.messages(dm))
		}
	})
}

func countConv[T any](conv string, xs []T, convOf func(T) string) int {
	n := 0
	for _, x := range xs {
		if convOf(x) == conv {
			n++
		}
	}
	return n
}

// TestOfflineCatchUp: a device that was away gets what it missed, in order,
// without gaps or repeats, across all its conversations, then live traffic.
func TestOfflineCatchUp(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	alice := newUser(t, p.URL(), "alice", 1)
	bob := newUser(t, p.URL(), "bob", 2)
	carol := newUser(t, p.URL(), "carol", 1)
	dm := createDirect(t, alice, bob)
	group := createGroup(t, carol, "team", alice, bob)
	alice.dev(0).connect(t)
	carol.dev(0).connect(t)
	online, away := bob.dev(0), bob.dev(1)
	online.connect(t)
	away.connect(t)

	send := func(d *device, conv string, n int, tag string) {
		t.Helper()
		for i := range n {
			_, err := d.session.Send(t.Context(), conv, text(fmt.Sprintf("%s %d", tag, i)))
			require.NoError(t, err)
		}
	}
	send(alice.dev(0), dm, 3, "before")
	send(carol.dev(0), group, 3, "before")
	away.rec.waitSeq(t, dm, lastSeq(t, bob, dm))
	away.rec.waitSeq(t, group, lastSeq(t, bob, group))
	seenDM, seenGroup := away.rec.messages(dm), away.rec.messages(group)
	away.disconnect(t) // flushes the acks of everything it received

	send(alice.dev(0), dm, 40, "while away")
	send(carol.dev(0), group, 25, "while away")
	send(bob.dev(0), dm, 5, "from the other device")
	online.rec.waitSeq(t, dm, lastSeq(t, bob, dm))

	away.connect(t) // a new Session: no client-side memory of what it saw
	for _, c := range []struct {
		conv string
		seen []*parleyv1.Message
	}{{dm, seenDM}, {group, seenGroup}} {
		all := history(t, bob.client(), c.conv)
		missed := all[len(c.seen):]
		requireSameMessages(t, c.seen, all[:len(c.seen)])
		got := away.rec.messages(c.conv)
		requireSameMessages(t, missed, got, "catch-up of %s starts right after the acked cursor", c.conv)
	}

	// Live traffic follows catch-up.
	m, err := alice.dev(0).session.Send(t.Context(), dm, text("live"))
	require.NoError(t, err)
	away.rec.waitSeq(t, dm, m.GetSeq())
	got := away.rec.messages(dm)
	require.Equal(t, m.GetId(), got[len(got)-1].GetId())
	requireContiguous(t, got, got[0].GetSeq())
}

// TestCatchUpGap: a device too far behind gets a bounded tail and a gap
// marker, and pages the rest through history.
func TestCatchUpGap(t *testing.T) {
	t.Parallel()
	const limit = 5
	p := startParleyd(t, "-catchup-limit", fmt.Sprint(limit))
	alice := newUser(t, p.URL(), "alice", 1)
	bob := newUser(t, p.URL(), "bob", 1)
	dm := createDirect(t, alice, bob)
	alice.dev(0).connect(t)
	for i := range 3 * limit {
		_, err := alice.dev(0).session.Send(t.Context(), dm, text(fmt.Sprint(i)))
		require.NoError(t, err)
	}
	bob.dev(0).connect(t)
	all := history(t, bob.client(), dm)
	last := all[len(all)-1].GetSeq()
	bob.dev(0).rec.waitSeq(t, dm, last)
	gap := waitEvent(t, bob.dev(0).rec, "gap", func(g *parley.GapEvent) bool { return g.ConversationID == dm })
	tail := bob.dev(0).rec.messages(dm)
	require.Len(t, tail, limit)
	require.Equal(t, gap.ToSeq+1, tail[0].GetSeq(), "the tail starts right after the gap")
	requireContiguous(t, tail, gap.ToSeq+1)
	page, _, err := bob.client().History(t.Context(), dm, gap.FromSeq, uint32(gap.ToSeq-gap.FromSeq))
	require.NoError(t, err)
	requireSameMessages(t, all[:len(all)-limit][gap.FromSeq-all[0].GetSeq()+1:], page)
}

// TestReadReceiptsAndUnread: MarkRead moves the read mark forward only,
// unread counts follow, and the other member's devices get a receipt.
func TestReadReceiptsAndUnread(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	alice := newUser(t, p.URL(), "alice", 2)
	bob := newUser(t, p.URL(), "bob", 1)
	for _, d := range alice.devices {
		d.connect(t)
	}
	bob.dev(0).connect(t)
	dm := createDirect(t, alice, bob)
	var sent []*parleyv1.Message
	for i := range 4 {
		m, err := alice.dev(0).session.Send(t.Context(), dm, text(fmt.Sprint(i)))
		require.NoError(t, err)
		sent = append(sent, m)
	}
	unread := func(u *user) (uint64, uint64) {
		t.Helper()
		res, err := u.client().Conversations().ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
		require.NoError(t, err)
		for _, s := range res.GetConversations() {
			if s.GetConversation().GetId() == dm {
				return s.GetUnreadCount(), s.GetLastReadSeq()
			}
		}
		t.Fatalf("%s does not list %s", u.name, dm)
		return 0, 0
	}
	last := sent[len(sent)-1].GetSeq()
	n, _ := unread(bob)
	require.Equal(t, uint64(len(sent)), n, "bob has not read anything")

	tests := []struct {
		name       string
		seq        uint64
		wantRead   uint64
		wantUnread uint64
	}{
		{name: "forward", seq: sent[1].GetSeq(), wantRead: sent[1].GetSeq(), wantUnread: 2},
		{name: "never_back", seq: sent[0].GetSeq(), wantRead: sent[1].GetSeq(), wantUnread: 2},
		{name: "to_the_end", seq: last, wantRead: last, wantUnread: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := bob.client().Chat().MarkRead(t.Context(), &parleyv1.MarkReadRequest{ConversationId: dm, Seq: tt.seq})
			require.NoError(t, err)
			require.Equal(t, tt.wantRead, res.GetLastReadSeq())
			n, read := unread(bob)
			require.Equal(t, tt.wantUnread, n)
			require.Equal(t, tt.wantRead, read)
			for _, d := range alice.devices {
				waitEvent(t, d.rec, fmt.Sprintf("receipt up to %d", tt.wantRead), func(r *parley.ReceiptEvent) bool {
					return r.Receipt.GetConversationId() == dm && r.Receipt.GetUserId() == bob.id && r.Receipt.GetLastReadSeq() == tt.wantRead
				})
			}
		})
	}
	t.Run("members_show_read_marks", func(t *testing.T) {
		res, err := alice.client().Conversations().GetConversation(t.Context(), &parleyv1.GetConversationRequest{ConversationId: dm})
		require.NoError(t, err)
		for _, m := range res.GetMembers() {
			if m.GetUser().GetId() == bob.id {
				require.Equal(t, last, m.GetLastReadSeq())
			}
		}
	})
	t.Run("beyond_last_is_clamped_or_rejected", func(t *testing.T) {
		_, err := bob.client().Chat().MarkRead(t.Context(), &parleyv1.MarkReadRequest{ConversationId: dm, Seq: last + 100})
		if err == nil {
			t.Log("the server accepts a read mark past the last message and clamps it")
			_, read := unread(bob)
			require.LessOrEqual(t, read, last, "a read mark past the last message would hide future ones")
			return
		}
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	})
}

// TestRecall: recalling a message notifies every device and blanks it in
// history; only the sender (in the window) or a group admin may recall.
func TestRecall(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	alice := newUser(t, p.URL(), "alice", 1)
	bob := newUser(t, p.URL(), "bob", 2)
	carol := newUser(t, p.URL(), "carol", 1)
	group := createGroup(t, alice, "g", bob, carol)
	for _, u := range []*user{alice, bob, carol} {
		for _, d := range u.devices {
			d.connect(t)
		}
	}
	byBob, err := bob.dev(0).session.Send(t.Context(), group, text("oops"))
	require.NoError(t, err)
	byCarol, err := carol.dev(0).session.Send(t.Context(), group, text("keep me"))
	require.NoError(t, err)

	t.Run("other_member_cannot_recall", func(t *testing.T) {
		_, err := bob.client().Chat().RecallMessage(t.Context(), &parleyv1.RecallMessageRequest{ConversationId: group, Seq: byCarol.GetSeq()})
		require.Equal(t, connect.CodePermissionDenied, connect.CodeOf(err), "%v", err)
	})
	t.Run("sender_recalls", func(t *testing.T) {
		res, err := bob.client().Chat().RecallMessage(t.Context(), &parleyv1.RecallMessageRequest{ConversationId: group, Seq: byBob.GetSeq()})
		require.NoError(t, err)
		notice := res.GetNotice()
		require.Equal(t, parleyv1.MessageKind_MESSAGE_KIND_SYSTEM, notice.GetKind())
		require.Equal(t, byBob.GetSeq(), notice.GetSystem().GetMessageRecalled().GetSeq())
		require.Equal(t, bob.id, notice.GetSystem().GetMessageRecalled().GetActorId())
		for _, u := range []*user{alice, bob, carol} {
			for _, d := range u.devices {
				d.rec.waitSeq(t, group, notice.GetSeq())
				ms := d.rec.messages(group)
				require.Equal(t, notice.GetId(), ms[len(ms)-1].GetId(), "%s got the notice", d.name)
			}
		}
		for _, u := range []*user{alice, bob, carol} {
			h := history(t, u.client(), group)
			var recalled *parleyv1.Message
			for _, m := range h {
				if m.GetSeq() == byBob.GetSeq() {
					recalled = m
				}
			}
			require.NotNil(t, recalled)
			require.True(t, recalled.GetRecalled())
			require.Nil(t, recalled.GetContent(), "no content after recall")
			require.NotNil(t, recalled.GetRecalledAt())
		}
	})
	t.Run("owner_recalls_anyone", func(t *testing.T) {
		_, err := alice.client().Chat().RecallMessage(t.Context(), &parleyv1.RecallMessageRequest{ConversationId: group, Seq: byCarol.GetSeq()})
		require.NoError(t, err)
	})
}
