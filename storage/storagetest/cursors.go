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
		require.Greater(f.t, b.LastSeq, b.After)
		out[b.ConversationID] = b
	}
	return out
}

func (f *fixture) ack(d storage.Device, c storage.Conversation, seq uint64) {
	f.t.Helper()
	require.NoError(f.t, f.s.SaveCursors(f.ctx(), []storage.Cursor{{DeviceID: d.ID, ConversationID: c.ID, Seq: seq}}))
}

func testBacklogsFollowCursors(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer, other := f.user(), f.user(), f.user()
	dev := f.device(me, hash("t"))
	d := f.direct(me, peer)
	f.direct(me, other) // no messages: never a backlog

	require.Empty(t, f.backlogs(me, dev))

	f.send(d, peer, 3)
	require.Equal(t, map[string]storage.Backlog{
		d.ID: {ConversationID: d.ID, After: 0, LastSeq: 3},
	}, f.backlogs(me, dev))

	f.ack(dev, d, 2)
	require.Equal(t, storage.Backlog{ConversationID: d.ID, After: 2, LastSeq: 3}, f.backlogs(me, dev)[d.ID])

	f.ack(dev, d, 3)
	require.Empty(t, f.backlogs(me, dev), "a caught-up conversation is omitted")

	// A conversation that appears later is included.
	g, _ := f.group(other, me)
	f.send(d, peer, 1)
	require.Equal(t, map[string]storage.Backlog{
		d.ID: {ConversationID: d.ID, After: 3, LastSeq: 4},
		g.ID: {ConversationID: g.ID, After: 0, LastSeq: 1},
	}, f.backlogs(me, dev))

	// Several cursors in one call.
	require.NoError(t, s.SaveCursors(f.ctx(), []storage.Cursor{
		{DeviceID: dev.ID, ConversationID: d.ID, Seq: 4},
		{DeviceID: dev.ID, ConversationID: g.ID, Seq: 1},
	}))
	require.Empty(t, f.backlogs(me, dev))
	require.NoError(t, s.SaveCursors(f.ctx(), nil))
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
	require.Equal(t, storage.Backlog{ConversationID: d.ID, After: 4, LastSeq: 5}, f.backlogs(me, dev)[d.ID])
}

func testBacklogsJoinPoints(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	owner, me := f.user(), f.user()
	dev := f.device(me, hash("t"))
	g, _ := f.group(owner)
	f.send(g, owner, 4) // seqs 2..5

	n, err := s.AddMembers(f.ctx(), g.ID, []string{me.ID}, 10, f.notice(owner, 50))
	require.NoError(t, err)
	require.Equal(t, uint64(6), n.Seq)

	// Nothing from before the join is owed: the device starts at the notice.
	require.Equal(t, storage.Backlog{ConversationID: g.ID, After: 5, LastSeq: 6}, f.backlogs(me, dev)[g.ID])

	f.ack(dev, g, 6)
	require.Empty(t, f.backlogs(me, dev))

	// Removed: nothing is owed any more, whatever happens next.
	f.send(g, owner, 1)
	_, err = s.RemoveMember(f.ctx(), g.ID, me.ID, f.notice(owner, 60))
	require.NoError(t, err)
	f.send(g, owner, 1)
	require.Empty(t, f.backlogs(me, dev))
}

func testBacklogsPerDevice(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer := f.user(), f.user()
	phone, laptop := f.device(me, hash("p")), f.device(me, hash("l"))
	d := f.direct(me, peer)
	f.send(d, peer, 3)

	f.ack(phone, d, 3)
	require.Empty(t, f.backlogs(me, phone))
	require.Equal(t, storage.Backlog{ConversationID: d.ID, After: 0, LastSeq: 3}, f.backlogs(me, laptop)[d.ID])

	// The peer's backlog is their own: their sends did not ack anything.
	peerDev := f.device(peer, hash("x"))
	require.Equal(t, storage.Backlog{ConversationID: d.ID, After: 0, LastSeq: 3}, f.backlogs(peer, peerDev)[d.ID])
}

func testCursorClamped(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	me, peer := f.user(), f.user()
	dev := f.device(me, hash("t"))
	d := f.direct(me, peer)
	f.send(d, peer, 3)

	// An ack beyond the newest seq cannot hide messages sent later.
	f.ack(dev, d, 1000)
	require.Empty(t, f.backlogs(me, dev))
	f.send(d, peer, 1)
	require.Equal(t, storage.Backlog{ConversationID: d.ID, After: 3, LastSeq: 4}, f.backlogs(me, dev)[d.ID])
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
	require.Equal(t, storage.Backlog{ConversationID: d.ID, After: 2, LastSeq: 3}, f.backlogs(me, dev)[d.ID])
}
