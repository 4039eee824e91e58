package main

import (
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// A device over its send limit gets an Error frame per refused send on its
// stream, which stays open, and ResourceExhausted with a RetryInfo detail
// from SendMessage; the limit is per device, not per user.
func TestSendRateLimit(t *testing.T) {
	t.Parallel()
	// One send a second with bursts of two: a test fast enough to be
	// useful runs through the burst long before a token comes back.
	ts := startServerEnv(t, map[string]string{"PARLEY_CHAT_SEND_RATE": "1", "PARLEY_CHAT_SEND_BURST": "2"})
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()
	text := &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "hi"}}

	s, err := alice.chat.Connect(t.Context())
	require.NoError(t, err)
	const sends = 5
	for i := range sends {
		require.NoError(t, s.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
			ConversationId: cid, ClientMsgId: fmt.Sprint("s", i), Content: text,
		}}}}))
	}
	limited := recv(t, s, func(f *parleyv1.ServerFrame) bool { return f.GetError() != nil })
	require.Equal(t, "resource_exhausted", limited.GetError().GetCode())
	require.Contains(t, limited.GetError().GetMessage(), "send rate limit exceeded: 1 messages per second per device")
	require.NotEqual(t, "s0", limited.GetError().GetClientMsgId(), "the burst is allowed")
	// The stream stays open: it still answers a ping.
	require.NoError(t, s.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ping{Ping: &parleyv1.PingFrame{Nonce: 7}}}}))
	recv(t, s, func(f *parleyv1.ServerFrame) bool { return f.GetPong().GetNonce() == 7 })

	// The unary path shares the device's bucket. Should the machine be
	// slow enough for a token to come back, the next send spends it.
	var unaryErr error
	for i := 0; unaryErr == nil && i < 10; i++ {
		_, unaryErr = alice.chat.SendMessage(t.Context(), &parleyv1.SendMessageRequest{ConversationId: cid, ClientMsgId: fmt.Sprint("u", i), Content: text})
	}
	var ce *connect.Error
	require.ErrorAs(t, unaryErr, &ce)
	require.Equal(t, connect.CodeResourceExhausted, ce.Code())
	require.Contains(t, ce.Message(), "send rate limit exceeded")
	require.Len(t, ce.Details(), 1)
	detail, err := connectproto.UnmarshalErrorDetail(ce.Details()[0])
	require.NoError(t, err)
	info, ok := detail.(*errdetails.RetryInfo)
	require.True(t, ok, "detail is %T", detail)
	require.Positive(t, info.GetRetryDelay().AsDuration())
	require.LessOrEqual(t, info.GetRetryDelay().AsDuration(), time.Second)

	// Bob's device has its own bucket.
	_, err = bob.chat.SendMessage(t.Context(), &parleyv1.SendMessageRequest{ConversationId: cid, ClientMsgId: "b0", Content: text})
	require.NoError(t, err)
	require.NoError(t, s.CloseSend())
}
