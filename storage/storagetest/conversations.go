package storagetest

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var conversationTests = []test{
	{"direct_created_once", testDirectCreatedOnce},
	{"direct_concurrent_create", testDirectConcurrent},
	{"direct_unknown_user", testDirectUnknownUser},
	{"group_create", testGroupCreate},
	{"group_full", testGroupFull},
	{"group_unknown_member", testGroupUnknownMember},
	{"get_conversation_not_found", testGetConversationNotFound},
	{"list_conversations", testListConversations},
	{"list_conversations_join_point", testListConversationsJoinPoint},
	{"mark_read", testMarkRead},
	{"direct_peers", testDirectPeers},
}

func testDirectPeers(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, c, d := f.user(), f.user(), f.user(), f.user()
	f.direct(a, b)
	f.direct(c, a)
	f.group(a, d) // a group makes nobody a peer

	peers, err := s.DirectPeers(f.ctx(), a.ID)
	require.NoError(t, err)
	require.ElementsMatch(t, []string{b.ID, c.ID}, peers)
	peers, err = s.DirectPeers(f.ctx(), b.ID)
	require.NoError(t, err)
	require.Equal(t, []string{a.ID}, peers)
	peers, err = s.DirectPeers(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Empty(t, peers)
	peers, err = s.DirectPeers(f.ctx(), "no-such-user")
	require.NoError(t, err)
	require.Empty(t, peers)
}

func testDirectCreatedOnce(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()

	id := newID("direct")
	c, created, err := s.GetOrCreateDirect(f.ctx(), id, a.ID, b.ID, at(5))
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, storage.Conversation{
		ID: id, Kind: storage.KindDirect, LastSeq: 0, CreatedAt: at(5), LastMessageAt: at(5),
	}, c)

	// Either way round, with any id, it is the same conversation.
	again, created, err := s.GetOrCreateDirect(f.ctx(), newID("direct"), b.ID, a.ID, at(9))
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, c, again)

	got, err := s.GetConversation(f.ctx(), id)
	require.NoError(t, err)
	require.Equal(t, c, got)

	ms, err := s.ListMembers(f.ctx(), id)
	require.NoError(t, err)
	require.Len(t, ms, 2)
	for _, m := range ms {
		require.Equal(t, uint64(1), m.JoinedSeq, "direct members see all of it")
		require.Equal(t, id, m.ConversationID)
	}
	require.ElementsMatch(t, []string{a.ID, b.ID}, []string{ms[0].UserID, ms[1].UserID})

	// A different pair gets a different conversation.
	other, created, err := s.GetOrCreateDirect(f.ctx(), newID("direct"), a.ID, f.user().ID, at(5))
	require.NoError(t, err)
	require.True(t, created)
	require.NotEqual(t, c.ID, other.ID)
}

func testDirectConcurrent(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()

	const n = 8
	type result struct {
		c       storage.Conversation
		created bool
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			x, y := a.ID, b.ID
			if i%2 == 1 {
				x, y = y, x
			}
			c, created, err := s.GetOrCreateDirect(f.ctx(), newID("direct"), x, y, at(0))
			results[i] = result{c, created, err}
		})
	}
	wg.Wait()

	createdCount := 0
	for _, r := range results {
		require.NoError(t, r.err)
		require.Equal(t, results[0].c.ID, r.c.ID)
		if r.created {
			createdCount++
		}
	}
	require.Equal(t, 1, createdCount)
}

func testDirectUnknownUser(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a := f.user()

	id := newID("direct")
	_, _, err := s.GetOrCreateDirect(f.ctx(), id, a.ID, "nobody", at(0))
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.GetConversation(f.ctx(), id)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testGroupCreate(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c := f.user(), f.user(), f.user()

	id := newID("group")
	notice := f.notice(owner, 1)
	notice.ConversationID = "ignored"
	g, n, err := s.CreateGroup(f.ctx(), storage.NewGroup{
		ID: id, Title: "team", OwnerID: owner.ID, MemberIDs: []string{b.ID, c.ID},
		CreatedAt: at(1), MaxMembers: 3, Notice: notice,
	})
	require.NoError(t, err)
	require.Equal(t, storage.Conversation{
		ID: id, Kind: storage.KindGroup, Title: "team", OwnerID: owner.ID,
		LastSeq: 1, CreatedAt: at(1), LastMessageAt: at(1),
	}, g)
	notice.ConversationID = id
	require.Equal(t, membershipNotice(notice, 1), n)

	got, err := s.GetMessage(f.ctx(), id, 1)
	require.NoError(t, err)
	require.Equal(t, asRead(n), got)

	ms, err := s.ListMembers(f.ctx(), id)
	require.NoError(t, err)
	require.Len(t, ms, 3)
	require.Equal(t, owner.ID, ms[0].UserID, "ordered by join: the owner first")
	roles := map[string]storage.Role{}
	for _, m := range ms {
		require.Equal(t, uint64(1), m.JoinedSeq)
		roles[m.UserID] = m.Role
	}
	require.Equal(t, map[string]storage.Role{
		owner.ID: storage.RoleOwner, b.ID: storage.RoleMember, c.ID: storage.RoleMember,
	}, roles)
}

func testGroupFull(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	us := f.users(3)

	id := newID("group")
	_, _, err := s.CreateGroup(f.ctx(), storage.NewGroup{
		ID: id, Title: "team", OwnerID: us[0].ID, MemberIDs: []string{us[1].ID, us[2].ID},
		CreatedAt: at(1), MaxMembers: 2, Notice: f.notice(us[0], 1),
	})
	require.ErrorIs(t, err, storage.ErrGroupFull)
	_, err = s.GetConversation(f.ctx(), id)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testGroupUnknownMember(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner := f.user()

	id := newID("group")
	_, _, err := s.CreateGroup(f.ctx(), storage.NewGroup{
		ID: id, Title: "team", OwnerID: owner.ID, MemberIDs: []string{"nobody"},
		CreatedAt: at(1), MaxMembers: 10, Notice: f.notice(owner, 1),
	})
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.GetConversation(f.ctx(), id)
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testGetConversationNotFound(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	_, err := s.GetConversation(f.ctx(), "nothing")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testListConversations(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer, other := f.user(), f.user(), f.user()

	quiet := f.direct(me, other) // no messages
	d := f.direct(me, peer)
	g, _ := f.group(peer, me, other)

	// d: two from the peer, one from me, one more from the peer.
	m := f.append(
		withTime(text(d, peer, "1"), at(20)),
		withTime(text(d, peer, "2"), at(21)),
		withTime(text(d, me, "3"), at(22)),
		withTime(text(d, peer, "4"), at(23)),
	)
	// g: the opening notice (by peer) and one from other, later than d.
	gm := f.append(withTime(text(g, other, "hi"), at(30)))

	list, err := s.ListConversations(f.ctx(), me.ID)
	require.NoError(t, err)
	require.Len(t, list, 3)
	require.Equal(t, []string{g.ID, d.ID, quiet.ID}, []string{
		list[0].Conversation.ID, list[1].Conversation.ID, list[2].Conversation.ID,
	}, "most recent activity first")

	gs := list[0]
	require.Equal(t, uint64(2), gs.Conversation.LastSeq)
	require.Equal(t, at(30), gs.Conversation.LastMessageAt)
	require.Equal(t, me.ID, gs.Self.UserID)
	require.Equal(t, storage.RoleMember, gs.Self.Role)
	last := asRead(gm[0])
	require.Equal(t, &last, gs.LastMessage)
	require.Equal(t, uint64(2), gs.Unread, "the notice and other's message")
	require.Empty(t, gs.PeerID)

	ds := list[1]
	require.Equal(t, &m[3], ds.LastMessage)
	require.Equal(t, peer.ID, ds.PeerID)
	// Sending advanced my LastReadSeq to 3; only 4 is unread. My own
	// messages never count.
	require.Equal(t, uint64(3), ds.Self.LastReadSeq)
	require.Equal(t, uint64(1), ds.Unread)

	qs := list[2]
	require.Nil(t, qs.LastMessage)
	require.Zero(t, qs.Unread)
	require.Equal(t, other.ID, qs.PeerID)

	// The peer sees me as the peer, and unread counts from their side.
	list, err = s.ListConversations(f.ctx(), peer.ID)
	require.NoError(t, err)
	require.Len(t, list, 2)
	require.Equal(t, d.ID, list[1].Conversation.ID)
	require.Equal(t, me.ID, list[1].PeerID)
	require.Equal(t, uint64(0), list[1].Unread, "the peer's own message at 4 marked 1..4 read for them")

	list, err = s.ListConversations(f.ctx(), "nobody")
	require.NoError(t, err)
	require.Empty(t, list)
}

func testListConversationsJoinPoint(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, late := f.user(), f.user()
	g, _ := f.group(owner)
	f.send(g, owner, 3) // seqs 2..4

	n, err := s.AddMembers(f.ctx(), g.ID, []string{late.ID}, 10, f.notice(owner, 40))
	require.NoError(t, err)
	require.Equal(t, uint64(5), n.Seq)

	list, err := s.ListConversations(f.ctx(), late.ID)
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, uint64(5), list[0].Self.JoinedSeq)
	last := asRead(n)
	require.Equal(t, &last, list[0].LastMessage)
	require.Equal(t, uint64(1), list[0].Unread, "only the join notice is visible")

	f.send(g, owner, 2)
	list, err = s.ListConversations(f.ctx(), late.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(3), list[0].Unread)
	require.Equal(t, uint64(7), list[0].LastMessage.Seq)
}

func testMarkRead(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)
	f.send(d, a, 3)

	for _, step := range []struct {
		name    string
		seq     uint64
		want    uint64
		changed bool
	}{
		{"raise", 2, 2, true},
		{"lower_is_ignored", 1, 2, false},
		{"same_is_unchanged", 2, 2, false},
		{"clamped_to_last_seq", 100, 3, true},
		{"clamped_again_is_unchanged", 100, 3, false},
	} {
		got, changed, err := s.MarkRead(f.ctx(), d.ID, b.ID, step.seq)
		require.NoError(t, err, step.name)
		require.Equal(t, step.want, got, step.name)
		require.Equal(t, step.changed, changed, step.name)
	}

	m, err := s.GetMember(f.ctx(), d.ID, b.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(3), m.LastReadSeq)
	list, err := s.ListConversations(f.ctx(), b.ID)
	require.NoError(t, err)
	require.Zero(t, list[0].Unread)

	_, _, err = s.MarkRead(f.ctx(), d.ID, f.user().ID, 1)
	require.ErrorIs(t, err, storage.ErrNotMember)
	_, _, err = s.MarkRead(f.ctx(), "nothing", a.ID, 1)
	require.ErrorIs(t, err, storage.ErrNotMember)
}

// withTime sets m's CreatedAt.
func withTime(m storage.NewMessage, t0 time.Time) storage.NewMessage {
	m.CreatedAt = t0
	return m
}
