package storagetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var cursorTests = []test{
	{"backlogs_follow_cursors", testBacklogsFollowCursors},
	{"cursors_never_go_back", testCursorsNeverGoBack},
	{"backlogs_honour_join_points", testBacklogsJoinPoints},
	{"backlogs_per_device", testBacklogsPerDevice},
	{"backlogs_most_recent_activity_first", testBacklogsOrder},
	{"cursor_clamped_to_last_seq", testCursorClamped},
	{"cursor_unknown_entries_skipped", testCursorUnknownSkipped},
}

// backlogs returns the device's backlogs keyed by conversation.
func (f *fixture) backlogs(u storage.User, d storage.Device) map[string]storage.Backlog {
	f.t.Helper()
	bs, err := f.s.Backlogs(f.ctx(), u.ID, d.ID)
	require.NoError(f.t, err)
	out := make(map[string]storage.Backlog, len(bs))
	for _, b := range bs {
		_, dup := out[b.ConversationID]
		require.False(f.t, dup, "conversation %s listed twice", b.ConversationID)
		require.GreaterOrEqual(f.t, b.LastSeq, b.After)
		out[b.ConversationID] = b
	}
	return out
}

func (f *fixture) ack(d storage.Device, c storage.Conversation, seq uint64) {
	f.t.Helper()
	require.NoError(f.t, f.s.SaveCursors(f.ctx(), []storage.Cursor{{DeviceID: d.ID, ConversationID: c.ID, Seq: seq}}))
}

// backlog is the Backlog of c with after and last.
func backlog(c storage.Conversation, after, last uint64) storage.Backlog {
	return storage.Backlog{ConversationID: c.ID, After: after, LastSeq: last}
}

// backlogMap keys bs by conversation, as fixture.backlogs does.
func backlogMap(bs ...storage.Backlog) map[string]storage.Backlog {
	out := make(map[string]storage.Backlog, len(bs))
	for _, b := range bs {
		out[b.ConversationID] = b
	}
	return out
}

func testBacklogsFollowCursors(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer, other := f.user(), f.user(), f.user()
	dev := f.device(me, hash("t"))
	d := f.direct(me, peer)
	quiet := f.direct(me, other) // no messages: listed at 0/0 throughout

	require.Equal(t, backlogMap(backlog(d, 0, 0), backlog(quiet, 0, 0)), f.backlogs(me, dev),
		"every conversation is listed, even without messages")

	f.send(d, peer, 3)
	require.Equal(t, backlogMap(backlog(d, 0, 3), backlog(quiet, 0, 0)), f.backlogs(me, dev))

	f.ack(dev, d, 2)
	require.Equal(t, backlogMap(backlog(d, 2, 3), backlog(quiet, 0, 0)), f.backlogs(me, dev))

	f.ack(dev, d, 3)
	require.Equal(t, backlogMap(backlog(d, 3, 3), backlog(quiet, 0, 0)), f.backlogs(me, dev),
		"a caught-up conversation is listed with After == LastSeq")

	// A conversation that appears later is included.
	g, _ := f.group(other, me)
	f.send(d, peer, 1)
	require.Equal(t, backlogMap(backlog(d, 3, 4), backlog(g, 0, 1), backlog(quiet, 0, 0)), f.backlogs(me, dev))

	// Several cursors in one call.
	require.NoError(t, s.SaveCursors(f.ctx(), []storage.Cursor{
		{DeviceID: dev.ID, ConversationID: d.ID, Seq: 4},
		{DeviceID: dev.ID, ConversationID: g.ID, Seq: 1},
	}))
	require.Equal(t, backlogMap(backlog(d, 4, 4), backlog(g, 1, 1), backlog(quiet, 0, 0)), f.backlogs(me, dev))
	require.NoError(t, s.SaveCursors(f.ctx(), nil))

	// A user without conversations, or unknown, has no entries.
	loner := f.user()
	require.Empty(t, f.backlogs(loner, f.device(loner, hash("l"))))
	require.Empty(t, f.backlogs(storage.User{ID: "nobody"}, dev))
}

func testCursorsNeverGoBack(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer := f.user(), f.user()
	dev := f.device(me, hash("t"))
	d := f.direct(me, peer)
	f.send(d, peer, 5)

	f.ack(dev, d, 4)
	f.ack(dev, d, 2)
	require.NoError(t, s.SaveCursors(f.ctx(), []storage.Cursor{
		{DeviceID: dev.ID, ConversationID: d.ID, Seq: 3},
		{DeviceID: dev.ID, ConversationID: d.ID, Seq: 1},
	}))
	require.Equal(t, backlogMap(backlog(d, 4, 5)), f.backlogs(me, dev))
}

func testBacklogsJoinPoints(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, me := f.user(), f.user()
	dev, fresh := f.device(me, hash("t")), f.device(me, hash("f"))
	g, _ := f.group(owner)
	f.send(g, owner, 4) // seqs 2..5
	require.Empty(t, f.backlogs(me, dev), "not a member yet")

	n, err := s.AddMembers(f.ctx(), g.ID, []string{me.ID}, 10, f.notice(owner, 50))
	require.NoError(t, err)
	require.Equal(t, uint64(6), n.Seq)

	// Nothing from before the join is owed: the device starts at the notice.
	require.Equal(t, backlogMap(backlog(g, 5, 6)), f.backlogs(me, dev))

	f.ack(dev, g, 6)
	require.Equal(t, backlogMap(backlog(g, 6, 6)), f.backlogs(me, dev))
	// A device without a cursor still starts at the join point, however far
	// the conversation has moved on.
	f.send(g, owner, 2)
	require.Equal(t, backlogMap(backlog(g, 5, 8)), f.backlogs(me, fresh))
	require.Equal(t, backlogMap(backlog(g, 6, 8)), f.backlogs(me, dev))

	// Removed: the conversation is no longer listed, whatever happens next.
	_, err = s.RemoveMember(f.ctx(), g.ID, me.ID, f.notice(owner, 60))
	require.NoError(t, err)
	f.send(g, owner, 1)
	require.Empty(t, f.backlogs(me, dev))
	require.Empty(t, f.backlogs(me, fresh))
}

func testBacklogsPerDevice(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer := f.user(), f.user()
	phone, laptop := f.device(me, hash("p")), f.device(me, hash("l"))
	d := f.direct(me, peer)
	f.send(d, peer, 3)

	f.ack(phone, d, 3)
	require.Equal(t, backlogMap(backlog(d, 3, 3)), f.backlogs(me, phone))
	require.Equal(t, backlogMap(backlog(d, 0, 3)), f.backlogs(me, laptop))
	f.ack(laptop, d, 1)
	require.Equal(t, backlogMap(backlog(d, 1, 3)), f.backlogs(me, laptop))
	require.Equal(t, backlogMap(backlog(d, 3, 3)), f.backlogs(me, phone), "the laptop's ack moved nothing else")

	// The peer's backlog is their own: their sends did not ack anything.
	peerDev := f.device(peer, hash("x"))
	require.Equal(t, backlogMap(backlog(d, 0, 3)), f.backlogs(peer, peerDev))
}

// testBacklogsOrder: most recent activity first.
func testBacklogsOrder(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, a, b, c := f.user(), f.user(), f.user(), f.user()
	dev := f.device(me, hash("t"))
	quiet := f.direct(me, c) // last activity: its creation, at(0)
	older, newer := f.direct(me, a), f.direct(me, b)
	m := text(newer, b, "newer")
	m.CreatedAt = at(30)
	f.append(m)
	m = text(older, a, "older")
	m.CreatedAt = at(20)
	f.append(m)

	bs, err := s.Backlogs(f.ctx(), me.ID, dev.ID)
	require.NoError(t, err)
	require.Equal(t, []storage.Backlog{backlog(newer, 0, 1), backlog(older, 0, 1), backlog(quiet, 0, 0)}, bs)
}

func testCursorClamped(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer := f.user(), f.user()
	dev := f.device(me, hash("t"))
	d := f.direct(me, peer)
	f.send(d, peer, 3)

	// An ack beyond the newest seq cannot hide messages sent later.
	f.ack(dev, d, 1000)
	require.Equal(t, backlogMap(backlog(d, 3, 3)), f.backlogs(me, dev))
	f.send(d, peer, 1)
	require.Equal(t, backlogMap(backlog(d, 3, 4)), f.backlogs(me, dev))
}

func testCursorUnknownSkipped(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer := f.user(), f.user()
	dev := f.device(me, hash("t"))
	d := f.direct(me, peer)
	f.send(d, peer, 3)

	require.NoError(t, s.SaveCursors(f.ctx(), []storage.Cursor{
		{DeviceID: dev.ID, ConversationID: "nothing", Seq: 3},
		{DeviceID: "no-device", ConversationID: d.ID, Seq: 3},
		{DeviceID: dev.ID, ConversationID: d.ID, Seq: 2},
	}), "one bad entry does not fail the others")
	require.Equal(t, backlogMap(backlog(d, 2, 3)), f.backlogs(me, dev))
}
