package storagetest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var lifecycleTests = []test{
	{"epoch_stable", testEpochStable},
	{"close", testClose},
	{"canceled_context", testCanceledContext},
}

func testEpochStable(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	e1, err := s.Epoch(f.ctx())
	require.NoError(t, err)
	require.NotEmpty(t, e1)

	f.user()
	e2, err := s.Epoch(f.ctx())
	require.NoError(t, err)
	require.Equal(t, e1, e2)
}

func testClose(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)

	require.NoError(t, s.Close())
	require.NoError(t, s.Close(), "Close is idempotent")

	calls := []struct {
		name string
		call func() error
	}{
		{"epoch", func() error { _, err := s.Epoch(f.ctx()); return err }},
		{"get_user", func() error { _, err := s.GetUser(f.ctx(), a.ID); return err }},
		{"create_user", func() error {
			return s.CreateUser(f.ctx(), storage.User{ID: newID("user"), Username: newID("name"), CreatedAt: at(0)})
		}},
		{"append_messages", func() error { _, err := s.AppendMessages(f.ctx(), []storage.NewMessage{text(d, a, "x")}); return err }},
		{"history", func() error {
			_, _, err := s.History(f.ctx(), storage.HistoryQuery{ConversationID: d.ID, Direction: storage.Before, Limit: 1})
			return err
		}},
		{"backlogs", func() error { _, err := s.Backlogs(f.ctx(), a.ID, "device"); return err }},
		{"save_cursors", func() error {
			return s.SaveCursors(f.ctx(), []storage.Cursor{{DeviceID: "device", ConversationID: d.ID, Seq: 1}})
		}},
		{"create_media", func() error {
			return s.CreateMedia(f.ctx(), storage.Media{ID: newID("media"), UploaderID: a.ID, BlobKey: "blob", CreatedAt: at(0)})
		}},
		{"touch_blobs", func() error { return s.TouchBlobs(f.ctx(), []string{"blob"}, at(0)) }},
		{"get_media", func() error { _, err := s.GetMedia(f.ctx(), "media"); return err }},
		{"can_read_media", func() error { _, err := s.CanReadMedia(f.ctx(), a.ID, "media"); return err }},
		{"sweep_media", func() error { _, err := s.SweepMedia(f.ctx(), at(100), 10); return err }},
	}
	for _, c := range calls {
		require.ErrorIs(t, c.call(), storage.ErrUnavailable, c.name)
	}
}

func testCanceledContext(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	a, b := f.user(), f.user()
	d := f.direct(a, b)

	ctx, cancel := context.WithCancel(f.ctx())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"get_user", func() error { _, err := s.GetUser(ctx, a.ID); return err }},
		{"create_user", func() error {
			return s.CreateUser(ctx, storage.User{ID: newID("user"), Username: newID("name"), CreatedAt: at(0)})
		}},
		{"append_messages", func() error { _, err := s.AppendMessages(ctx, []storage.NewMessage{text(d, a, "x")}); return err }},
		{"list_conversations", func() error { _, err := s.ListConversations(ctx, a.ID); return err }},
		{"create_media", func() error {
			return s.CreateMedia(ctx, storage.Media{ID: newID("media"), UploaderID: a.ID, BlobKey: "blob", CreatedAt: at(0)})
		}},
		{"can_read_media", func() error { _, err := s.CanReadMedia(ctx, a.ID, "media"); return err }},
		{"sweep_media", func() error { _, err := s.SweepMedia(ctx, at(100), 10); return err }},
	}
	for _, c := range calls {
		require.ErrorIs(t, c.call(), context.Canceled, c.name)
	}
	c, err := s.GetConversation(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Zero(t, c.LastSeq, "a canceled append commits nothing")
}
