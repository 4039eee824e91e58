package storagetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var memberTests = []test{
	{"get_member", testGetMember},
	{"add_members_join_at_notice", testAddMembers},
	{"add_members_skips_existing", testAddMembersSkipsExisting},
	{"add_members_all_existing_conflict", testAddMembersConflict},
	{"add_members_group_full", testAddMembersFull},
	{"add_members_unknown_user", testAddMembersUnknownUser},
	{"remove_member", testRemoveMember},
	{"not_group_or_not_found", testNotGroup},
	{"list_members_not_found", testListMembersNotFound},
}

func testGetMember(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b := f.user(), f.user()
	g, _ := f.group(owner, b)

	m, err := s.GetMember(f.ctx(), g.ID, b.ID)
	require.NoError(t, err)
	require.Equal(t, storage.Member{
		ConversationID: g.ID, UserID: b.ID, Role: storage.RoleMember,
		JoinedSeq: 1, LastReadSeq: 0, JoinedAt: at(0),
	}, m)

	_, err = s.GetMember(f.ctx(), g.ID, f.user().ID)
	require.ErrorIs(t, err, storage.ErrNotMember)
	_, err = s.GetMember(f.ctx(), "nothing", b.ID)
	require.ErrorIs(t, err, storage.ErrNotMember)
}

func testAddMembers(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c := f.user(), f.user(), f.user()
	g, _ := f.group(owner)
	f.send(g, owner, 2) // seqs 2, 3

	notice := f.notice(owner, 50)
	n, err := s.AddMembers(f.ctx(), g.ID, []string{b.ID, c.ID}, 10, notice)
	require.NoError(t, err)
	notice.ConversationID = g.ID
	require.Equal(t, membershipNotice(notice, 4), n)

	for _, u := range []storage.User{b, c} {
		m, err := s.GetMember(f.ctx(), g.ID, u.ID)
		require.NoError(t, err)
		require.Equal(t, storage.Member{
			ConversationID: g.ID, UserID: u.ID, Role: storage.RoleMember,
			JoinedSeq: 4, LastReadSeq: 3, JoinedAt: at(50),
		}, m, "joined at the notice's seq, having read what they cannot see")
	}
	got, err := s.GetConversation(f.ctx(), g.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(4), got.LastSeq)

	ms, err := s.ListMembers(f.ctx(), g.ID)
	require.NoError(t, err)
	require.Len(t, ms, 3)
	require.Equal(t, owner.ID, ms[0].UserID, "ordered by join")
}

func testAddMembersSkipsExisting(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c := f.user(), f.user(), f.user()
	g, _ := f.group(owner, b)

	n, err := s.AddMembers(f.ctx(), g.ID, []string{b.ID, c.ID, c.ID}, 10, f.notice(owner, 5))
	require.NoError(t, err)
	require.Equal(t, uint64(2), n.Seq)

	m, err := s.GetMember(f.ctx(), g.ID, b.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(1), m.JoinedSeq, "an existing member keeps their join point")
	m, err = s.GetMember(f.ctx(), g.ID, c.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(2), m.JoinedSeq)
}

func testAddMembersConflict(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b := f.user(), f.user()
	g, _ := f.group(owner, b)

	_, err := s.AddMembers(f.ctx(), g.ID, []string{b.ID, owner.ID}, 10, f.notice(owner, 5))
	require.ErrorIs(t, err, storage.ErrConflict)

	got, err := s.GetConversation(f.ctx(), g.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(1), got.LastSeq, "no notice was appended")
}

func testAddMembersFull(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b, c, d := f.user(), f.user(), f.user(), f.user()
	g, _ := f.group(owner, b)

	_, err := s.AddMembers(f.ctx(), g.ID, []string{c.ID, d.ID}, 3, f.notice(owner, 5))
	require.ErrorIs(t, err, storage.ErrGroupFull)
	_, err = s.GetMember(f.ctx(), g.ID, c.ID)
	require.ErrorIs(t, err, storage.ErrNotMember, "nothing was added")

	// Exactly at the limit is fine.
	_, err = s.AddMembers(f.ctx(), g.ID, []string{c.ID}, 3, f.notice(owner, 5))
	require.NoError(t, err)
}

func testAddMembersUnknownUser(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b := f.user(), f.user()
	g, _ := f.group(owner)

	_, err := s.AddMembers(f.ctx(), g.ID, []string{b.ID, "nobody"}, 10, f.notice(owner, 5))
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.GetMember(f.ctx(), g.ID, b.ID)
	require.ErrorIs(t, err, storage.ErrNotMember, "nothing was added")
}

func testRemoveMember(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, b := f.user(), f.user()
	g, _ := f.group(owner, b)

	notice := f.notice(owner, 5)
	n, err := s.RemoveMember(f.ctx(), g.ID, b.ID, notice)
	require.NoError(t, err)
	notice.ConversationID = g.ID
	require.Equal(t, membershipNotice(notice, 2), n)

	_, err = s.GetMember(f.ctx(), g.ID, b.ID)
	require.ErrorIs(t, err, storage.ErrNotMember)
	list, err := s.ListConversations(f.ctx(), b.ID)
	require.NoError(t, err)
	require.Empty(t, list)

	_, err = s.RemoveMember(f.ctx(), g.ID, b.ID, f.notice(owner, 6))
	require.ErrorIs(t, err, storage.ErrNotMember)
	got, err := s.GetConversation(f.ctx(), g.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(2), got.LastSeq, "a failed removal appends nothing")

	// A removed member can no longer send.
	res, err := s.AppendMessages(f.ctx(), []storage.NewMessage{text(g, b, "still here?")})
	require.NoError(t, err)
	require.ErrorIs(t, res[0].Err, storage.ErrNotMember)
}

func testNotGroup(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b, c := f.user(), f.user(), f.user()
	d := f.direct(a, b)

	_, err := s.AddMembers(f.ctx(), d.ID, []string{c.ID}, 10, f.notice(a, 5))
	require.ErrorIs(t, err, storage.ErrNotGroup)
	_, err = s.AddMembers(f.ctx(), "nothing", []string{c.ID}, 10, f.notice(a, 5))
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.RemoveMember(f.ctx(), "nothing", b.ID, f.notice(a, 5))
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.RemoveMember(f.ctx(), d.ID, b.ID, f.notice(a, 5))
	require.ErrorIs(t, err, storage.ErrNotGroup)

	ms, err := s.ListMembers(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Len(t, ms, 2)
}

func testListMembersNotFound(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	_, err := s.ListMembers(f.ctx(), "nothing")
	require.ErrorIs(t, err, storage.ErrNotFound)
}
