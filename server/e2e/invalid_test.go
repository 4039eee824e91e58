package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// TestBadInputLeavesStoreUnchanged: every bad request is answered with its
// code, and afterwards each member's conversation list and every history
// are exactly what they were before.
func TestBadInputLeavesStoreUnchanged(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	alice := newUser(t, p.URL(), "alice", 1)
	bob := newUser(t, p.URL(), "bob", 1)
	carol := newUser(t, p.URL(), "carol", 1)
	dm := createDirect(t, alice, bob)
	group := createGroup(t, alice, "g", bob)
	for _, u := range []*user{alice, bob, carol} {
		u.dev(0).connect(t)
	}
	var aliceMsg *parleyv1.Message
	for _, c := range []string{dm, group} {
		m, err := alice.dev(0).session.Send(t.Context(), c, text("hello"))
		require.NoError(t, err)
		aliceMsg = m
	}
	_, err := bob.dev(0).session.Send(t.Context(), dm, text("hi"))
	require.NoError(t, err)
	aliceDM := history(t, alice.client(), dm)[0]

	snapshot := func() []proto.Message {
		t.Helper()
		var snap []proto.Message
		for _, u := range []*user{alice, bob, carol} {
			res, err := u.client().Conversations().ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
			require.NoError(t, err)
			snap = append(snap, res)
			for _, s := range res.GetConversations() {
				for _, m := range history(t, u.client(), s.GetConversation().GetId()) {
					snap = append(snap, m)
				}
				conv, err := u.client().Conversations().GetConversation(t.Context(), &parleyv1.GetConversationRequest{ConversationId: s.GetConversation().GetId()})
				require.NoError(t, err)
				snap = append(snap, conv)
			}
		}
		return snap
	}
	before := snapshot()

	notMember := []connect.Code{connect.CodeNotFound, connect.CodePermissionDenied}
	invalid := []connect.Code{connect.CodeInvalidArgument}
	sendAs := func(u *user, conv, id string, content *parleyv1.Content) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := u.client().Chat().SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: conv, ClientMsgId: id, Content: content})
			return err
		}
	}
	streamSendAs := func(u *user, conv string, content *parleyv1.Content) func(context.Context) error {
		return func(ctx context.Context) error {
			_, err := u.dev(0).session.Send(ctx, conv, content)
			return err
		}
	}
	tooLong := strings.Repeat("a", 64<<10+1)
	tests := []struct {
		name string
		call func(context.Context) error
		want []connect.Code
	}{
		{name: "empty_body", call: sendAs(alice, dm, "e1", &parleyv1.Content{}), want: invalid},
		{name: "no_content", call: sendAs(alice, dm, "e2", nil), want: invalid},
		{name: "empty_text", call: sendAs(alice, dm, "e3", text("")), want: invalid},
		{name: "text_64KiB_plus_1", call: sendAs(alice, dm, "e4", text(tooLong)), want: invalid},
		{name: "no_client_msg_id", call: sendAs(alice, dm, "", text("x")), want: invalid},
		{name: "client_msg_id_too_long", call: sendAs(alice, dm, strings.Repeat("i", 65), text("x")), want: invalid},
		{name: "no_conversation_id", call: sendAs(alice, "", "e5", text("x")), want: invalid},
		{name: "unknown_conversation", call: sendAs(alice, "no-such-conversation", "e6", text("x")), want: []connect.Code{connect.CodeNotFound}},
		{name: "foreign_conversation", call: sendAs(carol, dm, "e7", text("x")), want: notMember},
		{name: "image_of_unknown_media", call: sendAs(alice, dm, "e8", &parleyv1.Content{Body: &parleyv1.Content_Image{Image: &parleyv1.MediaRef{MediaId: "m"}}}), want: []connect.Code{connect.CodeNotFound}},
		{name: "stream_empty_body", call: streamSendAs(alice, dm, &parleyv1.Content{}), want: invalid},
		{name: "stream_text_64KiB_plus_1", call: streamSendAs(alice, dm, text(tooLong)), want: invalid},
		{name: "stream_unknown_conversation", call: streamSendAs(alice, "no-such-conversation", text("x")), want: []connect.Code{connect.CodeNotFound}},
		{name: "stream_foreign_conversation", call: streamSendAs(carol, dm, text("x")), want: notMember},
		{name: "invalid_utf8", call: rawSendInvalidUTF8(p.URL(), alice, dm), want: invalid},
		{name: "history_of_foreign_conversation", call: func(ctx context.Context) error {
			_, _, err := carol.client().History(ctx, dm, 0, 10)
			return err
		}, want: notMember},
		{name: "history_limit_201", call: func(ctx context.Context) error {
			_, err := alice.client().Chat().GetHistory(ctx, &parleyv1.GetHistoryRequest{ConversationId: dm, Direction: parleyv1.HistoryDirection_HISTORY_DIRECTION_AFTER, Limit: 201})
			return err
		}, want: invalid},
		{name: "history_without_direction", call: func(ctx context.Context) error {
			_, err := alice.client().Chat().GetHistory(ctx, &parleyv1.GetHistoryRequest{ConversationId: dm})
			return err
		}, want: invalid},
		{name: "mark_read_foreign_conversation", call: func(ctx context.Context) error {
			_, err := carol.client().Chat().MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: dm, Seq: 1})
			return err
		}, want: notMember},
		{name: "mark_read_seq_zero", call: func(ctx context.Context) error {
			_, err := bob.client().Chat().MarkRead(ctx, &parleyv1.MarkReadRequest{ConversationId: dm, Seq: 0})
			return err
		}, want: invalid},
		{name: "recall_someone_elses_message", call: func(ctx context.Context) error {
			_, err := bob.client().Chat().RecallMessage(ctx, &parleyv1.RecallMessageRequest{ConversationId: dm, Seq: aliceDM.GetSeq()})
			return err
		}, want: []connect.Code{connect.CodePermissionDenied}},
		{name: "recall_unknown_seq", call: func(ctx context.Context) error {
			_, err := alice.client().Chat().RecallMessage(ctx, &parleyv1.RecallMessageRequest{ConversationId: dm, Seq: 9999})
			return err
		}, want: []connect.Code{connect.CodeNotFound}},
		{name: "recall_in_foreign_conversation", call: func(ctx context.Context) error {
			_, err := carol.client().Chat().RecallMessage(ctx, &parleyv1.RecallMessageRequest{ConversationId: group, Seq: aliceMsg.GetSeq()})
			return err
		}, want: notMember},
		{name: "get_foreign_conversation", call: func(ctx context.Context) error {
			_, err := carol.client().Conversations().GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: dm})
			return err
		}, want: notMember},
		{name: "member_adds_to_group", call: func(ctx context.Context) error {
			_, err := bob.client().Conversations().AddMembers(ctx, &parleyv1.AddMembersRequest{ConversationId: group, UserIds: []string{carol.id}})
			return err
		}, want: []connect.Code{connect.CodePermissionDenied}},
		{name: "outsider_adds_to_group", call: func(ctx context.Context) error {
			_, err := carol.client().Conversations().AddMembers(ctx, &parleyv1.AddMembersRequest{ConversationId: group, UserIds: []string{carol.id}})
			return err
		}, want: notMember},
		{name: "add_to_direct", call: func(ctx context.Context) error {
			_, err := alice.client().Conversations().AddMembers(ctx, &parleyv1.AddMembersRequest{ConversationId: dm, UserIds: []string{carol.id}})
			return err
		}, want: []connect.Code{connect.CodeFailedPrecondition}},
		{name: "add_unknown_user", call: func(ctx context.Context) error {
			_, err := alice.client().Conversations().AddMembers(ctx, &parleyv1.AddMembersRequest{ConversationId: group, UserIds: []string{"no-such-user"}})
			return err
		}, want: []connect.Code{connect.CodeNotFound}},
		{name: "remove_owner", call: func(ctx context.Context) error {
			_, err := alice.client().Conversations().RemoveMember(ctx, &parleyv1.RemoveMemberRequest{ConversationId: group, UserId: alice.id})
			return err
		}, want: []connect.Code{connect.CodeFailedPrecondition, connect.CodePermissionDenied, connect.CodeInvalidArgument}},
		{name: "owner_leaves", call: func(ctx context.Context) error {
			_, err := alice.client().Conversations().Leave(ctx, &parleyv1.LeaveRequest{ConversationId: group})
			return err
		}, want: []connect.Code{connect.CodeFailedPrecondition}},
		{name: "leave_direct", call: func(ctx context.Context) error {
			_, err := bob.client().Conversations().Leave(ctx, &parleyv1.LeaveRequest{ConversationId: dm})
			return err
		}, want: []connect.Code{connect.CodeFailedPrecondition}},
		{name: "direct_with_unknown_user", call: func(ctx context.Context) error {
			_, err := alice.client().Conversations().CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_Username{Username: "nobody"}})
			return err
		}, want: []connect.Code{connect.CodeNotFound}},
		{name: "group_without_title", call: func(ctx context.Context) error {
			_, err := alice.client().Conversations().CreateGroup(ctx, &parleyv1.CreateGroupRequest{})
			return err
		}, want: invalid},
		{name: "group_with_unknown_member", call: func(ctx context.Context) error {
			_, err := alice.client().Conversations().CreateGroup(ctx, &parleyv1.CreateGroupRequest{Title: "t", MemberIds: []string{"no-such-user"}})
			return err
		}, want: []connect.Code{connect.CodeNotFound, connect.CodeInvalidArgument}},
		{name: "lookup_unknown_user", call: func(ctx context.Context) error {
			_, err := alice.client().LookupUser(ctx, "nobody")
			return err
		}, want: []connect.Code{connect.CodeNotFound}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(t.Context())
			require.Error(t, err)
			code := connect.CodeOf(err)
			require.True(t, slices.Contains(tt.want, code), "got %v (%v), want one of %v", code, err, tt.want)
		})
	}

	after := snapshot()
	require.Len(t, after, len(before))
	for i := range before {
		require.True(t, proto.Equal(before[i], after[i]), "store changed:\nbefore %v\nafter  %v", before[i], after[i])
	}

	t.Run("text_of_exactly_64KiB_is_accepted", func(t *testing.T) {
		m, err := alice.dev(0).session.Send(t.Context(), dm, text(tooLong[1:]))
		require.NoError(t, err)
		require.Len(t, m.GetContent().GetText(), 64<<10)
	})
}

// rawSendInvalidUTF8 posts a SendMessage whose text is not UTF-8, which the
// Go client refuses to marshal, as a hand-encoded Connect unary request.
func rawSendInvalidUTF8(baseURL string, u *user, conv string) func(context.Context) error {
	return func(ctx context.Context) error {
		var content []byte
		content = protowire.AppendTag(content, 1, protowire.BytesType)
		content = protowire.AppendBytes(content, []byte{'o', 'k', 0xff, 0xfe})
		var body []byte
		body = protowire.AppendTag(body, 1, protowire.BytesType)
		body = protowire.AppendString(body, conv)
		body = protowire.AppendTag(body, 2, protowire.BytesType)
		body = protowire.AppendString(body, "invalid-utf8")
		body = protowire.AppendTag(body, 3, protowire.BytesType)
		body = protowire.AppendBytes(body, content)
		// Proof that this is what the Go client would refuse.
		var probe parleyv1.SendMessageRequest
		if err := proto.Unmarshal(body, &probe); err == nil {
			return connect.NewError(connect.CodeInternal, "test bug: the request decodes")
		}

		req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/parley.v1.ChatService/SendMessage", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/proto")
		req.Header.Set("Connect-Protocol-Version", "1")
		req.Header.Set("Authorization", "Bearer "+u.client().Credentials().AccessToken)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		data, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		if res.StatusCode == http.StatusOK {
			return nil
		}
		var wire struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(data, &wire); err != nil {
			return connect.NewError(connect.CodeUnknown, "HTTP "+res.Status+": "+string(data))
		}
		var code connect.Code
		if err := code.UnmarshalText([]byte(wire.Code)); err != nil {
			return connect.NewError(connect.CodeUnknown, wire.Code+": "+wire.Message)
		}
		return connect.NewError(code, wire.Message)
	}
}
