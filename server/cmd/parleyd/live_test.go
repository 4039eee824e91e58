package main

import (
	"context"
	"io"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// subscribeRecv reads Subscribe frames until one satisfies want.
func subscribeRecv(tb testing.TB, s parleyv1connect.ChatServiceSubscribeClientStream, want func(*parleyv1.ServerFrame) bool) *parleyv1.ServerFrame {
	tb.Helper()
	for {
		res, err := s.Receive()
		require.NoError(tb, err)
		if want(res.GetFrame()) {
			return res.GetFrame()
		}
	}
}

// The browser path (Subscribe plus unary calls) and the native path
// (Connect) share one engine: typing, receipts, presence and messages
// flow between them.
func TestSubscribeAndUnaryCallsShareTheEngine(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	// Bob is on the browser path.
	bs, err := bob.chat.Subscribe(ctx, &parleyv1.SubscribeRequest{})
	require.NoError(t, err)
	subscribeRecv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })

	// Alice connects natively: she learns Bob is online, and Bob learns
	// she came online.
	as, err := alice.chat.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, as.SendHeaders())
	p := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, bob.id, p.GetPresence().GetUserId())
	require.True(t, p.GetPresence().GetOnline())
	p = subscribeRecv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, alice.id, p.GetPresence().GetUserId())
	require.True(t, p.GetPresence().GetOnline())

	// Typing from the unary call reaches Alice's stream, not Bob's own.
	_, err = bob.chat.SetTyping(ctx, &parleyv1.SetTypingRequest{ConversationId: cid, Typing: true})
	require.NoError(t, err)
	ty := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetTyping() != nil })
	require.Equal(t, bob.id, ty.GetTyping().GetUserId())
	require.True(t, ty.GetTyping().GetTyping())

	// A unary send reaches Alice's stream and Bob's own subscription.
	sent, err := bob.chat.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: cid, ClientMsgId: "b1", Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "from the browser"}}})
	require.NoError(t, err)
	m := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetMessage() != nil })
	require.Equal(t, sent.GetMessage().GetId(), m.GetMessage().GetId())
	// Bob's own subscription gets it as the SendAck, in its place.
	m = subscribeRecv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSendAck() != nil })
	require.False(t, m.GetSendAck().GetDuplicate())
	require.Equal(t, "b1", m.GetSendAck().GetClientMsgId())
	require.Equal(t, "from the browser", m.GetSendAck().GetMessage().GetContent().GetText())

	// Alice reads it over her stream; Bob gets the receipt.
	require.NoError(t, as.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Read{Read: &parleyv1.ReadFrame{ConversationId: cid, Seq: 1}}}}))
	r := subscribeRecv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetReceipt() != nil })
	require.Equal(t, alice.id, r.GetReceipt().GetUserId())
	require.Equal(t, uint64(1), r.GetReceipt().GetLastReadSeq())

	// Alice leaves: Bob sees her go offline.
	require.NoError(t, as.CloseSend())
	for {
		if _, err := as.Receive(); err != nil {
			break
		}
	}
	p = subscribeRecv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, alice.id, p.GetPresence().GetUserId())
	require.False(t, p.GetPresence().GetOnline())
	require.NotNil(t, p.GetPresence().GetLastSeenAt())
}

// A client that half-closes right after sending still gets its answers.
func TestHalfClosedStreamGetsItsAnswers(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	s, err := alice.chat.Connect(t.Context())
	require.NoError(t, err)
	require.NoError(t, s.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
		ConversationId: conv.GetConversation().GetId(), ClientMsgId: "x1", Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "bye"}},
	}}}}))
	require.NoError(t, s.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ping{Ping: &parleyv1.PingFrame{Nonce: 9}}}}))
	require.NoError(t, s.CloseSend())
	var acked, ponged bool
	for {
		res, err := s.Receive()
		if err != nil {
			require.ErrorIs(t, err, io.EOF, "the stream ends cleanly")
			break
		}
		acked = acked || res.GetFrame().GetSendAck().GetClientMsgId() == "x1"
		ponged = ponged || res.GetFrame().GetPong().GetNonce() == 9
	}
	require.True(t, acked, "send ack delivered before the stream ended")
	require.True(t, ponged, "pong delivered before the stream ended")
}

func TestLocateOnASingleNode(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	hc := h2cClient()
	u := register(t, hc, ts.url, "erin")
	cluster := parleyv1connect.NewClusterServiceClient(connect.NewClient(connecthttp.NewTransport(hc, ts.url), bearer(u.token)))
	loc, err := cluster.Locate(t.Context(), &parleyv1.LocateRequest{})
	require.NoError(t, err)
	require.Equal(t, u.id, loc.GetUserId())
	require.Equal(t, uint32(0), loc.GetShard())
	require.Equal(t, uint32(1), loc.GetShards())
	anon := parleyv1connect.NewClusterServiceClient(connect.NewClient(connecthttp.NewTransport(hc, ts.url)))
	_, err = anon.Locate(t.Context(), &parleyv1.LocateRequest{})
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
}

func TestGroupSizeIsBounded(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "-max-group-size", "2")
	hc := h2cClient()
	owner := register(t, hc, ts.url, "owner")
	a := register(t, hc, ts.url, "member-a")
	b := register(t, hc, ts.url, "member-b")
	// The owner among the members does not count twice.
	g, err := owner.convs.CreateGroup(t.Context(), &parleyv1.CreateGroupRequest{Title: "pair", MemberIds: []string{owner.id, a.id}})
	require.NoError(t, err)
	_, err = owner.convs.CreateGroup(t.Context(), &parleyv1.CreateGroupRequest{Title: "trio", MemberIds: []string{a.id, b.id}})
	require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err))
	require.ErrorContains(t, err, "member_ids: a group has at most 2 members")
	_, err = owner.convs.AddMembers(t.Context(), &parleyv1.AddMembersRequest{ConversationId: g.GetConversation().GetId(), UserIds: []string{b.id}})
	require.Equal(t, connect.CodeFailedPrecondition, connect.CodeOf(err))
	list, err := owner.convs.ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
	require.NoError(t, err)
	require.Len(t, list.GetConversations(), 1, "the refused group was not created")
}

// Two people online before their direct conversation exists learn of each
// other's presence when it is created, and of a disconnect afterwards:
// their streams chose whom to follow when they opened.
func TestNewDirectConversationIntroducesPresence(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	// A missing frame fails the test at the deadline instead of hanging it.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	as, err := alice.chat.Subscribe(ctx, &parleyv1.SubscribeRequest{})
	require.NoError(t, err)
	subscribeRecv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })
	bobCtx, bobGone := context.WithCancel(ctx)
	bs, err := bob.chat.Subscribe(bobCtx, &parleyv1.SubscribeRequest{})
	require.NoError(t, err)
	subscribeRecv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })

	_, err = alice.convs.CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_Username{Username: "bob"}})
	require.NoError(t, err)
	p := subscribeRecv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, bob.id, p.GetPresence().GetUserId())
	require.True(t, p.GetPresence().GetOnline())
	p = subscribeRecv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, alice.id, p.GetPresence().GetUserId())
	require.True(t, p.GetPresence().GetOnline())

	bobGone()
	p = subscribeRecv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetPresence() != nil })
	require.Equal(t, bob.id, p.GetPresence().GetUserId())
	require.False(t, p.GetPresence().GetOnline())
}
