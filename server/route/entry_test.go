package route

import (
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

func TestEntryRoundTrip(t *testing.T) {
	t.Parallel()
	frame := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Typing{Typing: &parleyv1.Typing{ConversationId: "c", UserId: "u", Typing: true}}}
	ack := &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SendAck{SendAck: &parleyv1.SendAck{ClientMsgId: "m"}}}
	fb, err := proto.Marshal(frame)
	require.NoError(t, err)
	ab, err := proto.Marshal(ack)
	require.NoError(t, err)
	b := encodeEntry("node-1", true, []encodedDelivery{
		{frame: fb, users: []string{"u1", "u2"}},
		{frame: fb, ack: ab, ackUser: "u3", ackDevice: "d3"},
	})
	// A newer server may add fields; this one skips them.
	b = protowire.AppendTag(b, 99, protowire.BytesType)
	b = protowire.AppendString(b, "from the future")

	e, err := decodeEntry(b)
	require.NoError(t, err)
	require.Equal(t, "node-1", e.origin)
	require.True(t, e.recheck)
	require.Len(t, e.deliveries, 2)
	require.Equal(t, []string{"u1", "u2"}, e.deliveries[0].Users)
	require.True(t, proto.Equal(frame, e.deliveries[0].Frame))
	require.Nil(t, e.deliveries[0].Ack)
	require.True(t, proto.Equal(ack, e.deliveries[1].Ack))
	require.Equal(t, "u3", e.deliveries[1].AckUser)
	require.Equal(t, "d3", e.deliveries[1].AckDevice)

	e, err = decodeEntry(encodeControl("node-2", false, "dev-9"))
	require.NoError(t, err)
	require.Equal(t, "node-2", e.origin)
	require.False(t, e.recheck)
	require.Equal(t, "dev-9", e.closeDevice)
	require.Empty(t, e.deliveries)

	_, err = decodeEntry([]byte{0xff})
	require.ErrorIs(t, err, errMalformed)
	_, err = decodeEntry(protowire.AppendBytes(protowire.AppendTag(nil, entryDeliveries, protowire.BytesType), nil))
	require.ErrorIs(t, err, errMalformed, "a delivery needs a frame")
}
