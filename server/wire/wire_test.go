package wire

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage"
)

func TestMessageRoundTrip(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 28, 1, 2, 3, 0, time.UTC)
	text := &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "hello"}}
	body, kind, err := EncodeContent(text)
	require.NoError(t, err)
	require.Equal(t, storage.MessageText, kind)

	stored := storage.Message{ID: "m1", ConversationID: "c1", Seq: 7, SenderID: "u1", SenderDeviceID: "d1", ClientMsgID: "x", Kind: kind, Body: body, CreatedAt: at}
	got := Message(stored)
	require.True(t, proto.Equal(text, got.GetContent()))
	require.Equal(t, uint64(7), got.GetSeq())
	require.Equal(t, parleyv1.MessageKind_MESSAGE_KIND_TEXT, got.GetKind())
	require.Equal(t, at, got.GetCreatedAt().AsTime())
	require.False(t, got.GetRecalled())

	t.Run("recalled_has_no_content", func(t *testing.T) {
		t.Parallel()
		r := stored
		r.Body = nil
		r.RecalledAt = at.Add(time.Minute)
		m := Message(r)
		require.True(t, m.GetRecalled())
		require.Nil(t, m.GetContent())
		require.Equal(t, r.RecalledAt, m.GetRecalledAt().AsTime())
	})
	t.Run("system_event", func(t *testing.T) {
		t.Parallel()
		e := &parleyv1.SystemEvent{Event: &parleyv1.SystemEvent_MessageRecalled{MessageRecalled: &parleyv1.MessageRecalled{Seq: 3, ActorId: "u1"}}}
		m := Message(storage.Message{ID: "s", Kind: storage.MessageSystem, Body: EncodeSystem(e)})
		require.True(t, proto.Equal(e, m.GetSystem()))
		require.Nil(t, m.GetContent())
	})
	t.Run("undecodable_body_leaves_content_empty", func(t *testing.T) {
		t.Parallel()
		m := Message(storage.Message{ID: "b", Kind: storage.MessageText, Body: []byte{0xff, 0xff}})
		require.Nil(t, m.GetContent())
	})
	t.Run("empty_content_is_refused", func(t *testing.T) {
		t.Parallel()
		_, _, err := EncodeContent(&parleyv1.Content{})
		require.Error(t, err)
	})
	t.Run("zero_time_is_nil", func(t *testing.T) {
		t.Parallel()
		require.Nil(t, Time(time.Time{}))
	})
}
