package e2e_test

import (
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// searchAll pages a search to its end with the SDK and returns every
// result.
func searchAll(t *testing.T, c *parley.Client, query, conv string, pageSize uint32) []*parleyv1.SearchResult {
	t.Helper()
	var all []*parleyv1.SearchResult
	token := ""
	for pages := 0; ; pages++ {
		require.Less(t, pages, 100, "paging must end")
		page, next, err := c.Search(t.Context(), query, conv, token, pageSize)
		require.NoError(t, err)
		all = append(all, page...)
		if next == "" {
			return all
		}
		require.Len(t, page, int(pageSize), "a page before the last is full")
		token = next
	}
}

func resultSeqs(rs []*parleyv1.SearchResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/%d", r.GetConversationId(), r.GetSeq())
	}
	return out
}

// TestSearchMessages searches through a real parleyd: membership, join
// points, recalls, captions-free text only, snippets with highlights,
// paging with the token, and bad input.
func TestSearchMessages(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	alice := newUser(t, p.URL(), "alice", 1)
	bob := newUser(t, p.URL(), "bob", 1)
	carol := newUser(t, p.URL(), "carol", 1)
	group := createGroup(t, alice, "offsite", bob)
	dm := createDirect(t, alice, bob)
	sent := 0
	chat := func(u *user, conv, body string) *parleyv1.Message {
		t.Helper()
		// A counter, not the clock: two sends must never share an
		// idempotency key, or the second returns the first.
		sent++
		res, err := u.client().Chat().SendMessage(t.Context(), &parleyv1.SendMessageRequest{
			ConversationId: conv, ClientMsgId: fmt.Sprintf("c-%d", sent), Content: text(body),
		})
		require.NoError(t, err)
		return res.GetMessage()
	}

	early := chat(alice, group, "The Offsite is in Zürich this year")
	private := chat(alice, dm, "offsite budget is secret")
	_, err := alice.client().Conversations().AddMembers(t.Context(), &parleyv1.AddMembersRequest{ConversationId: group, UserIds: []string{carol.id}})
	require.NoError(t, err)
	var later []*parleyv1.Message
	for i := range 7 {
		later = append(later, chat(bob, group, fmt.Sprintf("offsite item %d: bring a zurich map", i)))
	}
	oops := chat(carol, group, "offsite password is hunter2")

	t.Run("membership_and_join_point", func(t *testing.T) {
		got := searchAll(t, carol.client(), "offsite", "", 0)
		require.Len(t, got, 8, "carol: only the group, only after she joined")
		require.Equal(t, oops.GetSeq(), got[0].GetSeq(), "newest first")
		for _, r := range got {
			require.Equal(t, group, r.GetConversationId())
			require.Greater(t, r.GetSeq(), early.GetSeq())
		}
		got = searchAll(t, bob.client(), "offsite", "", 0)
		require.Len(t, got, 10, "bob: group from the start and the direct chat")
		require.Contains(t, resultSeqs(got), fmt.Sprintf("%s/%d", dm, private.GetSeq()))
	})

	t.Run("snippet_and_highlights", func(t *testing.T) {
		got, _, err := alice.client().Search(t.Context(), "zurich OFFS", group, "", 100)
		require.NoError(t, err)
		require.Len(t, got, 8)
		r := got[len(got)-1]
		require.Equal(t, early.GetId(), r.GetMessageId())
		require.Equal(t, alice.id, r.GetSenderId())
		require.Equal(t, parleyv1.MessageKind_MESSAGE_KIND_TEXT, r.GetKind())
		require.Equal(t, "The Offsite is in Zürich this year", r.GetSnippet())
		runes := []rune(r.GetSnippet())
		var marked []string
		for _, h := range r.GetHighlights() {
			marked = append(marked, string(runes[h.GetStart():h.GetEnd()]))
		}
		require.Equal(t, []string{"Offsite", "Zürich"}, marked)
	})

	t.Run("paging_covers_all_once", func(t *testing.T) {
		whole := searchAll(t, bob.client(), "offsite", "", 100)
		for _, size := range []uint32{1, 3, 4} {
			require.Equal(t, resultSeqs(whole), resultSeqs(searchAll(t, bob.client(), "offsite", "", size)), "page size %d", size)
		}
	})

	t.Run("recall_removes", func(t *testing.T) {
		_, err := carol.client().Chat().RecallMessage(t.Context(), &parleyv1.RecallMessageRequest{ConversationId: group, Seq: oops.GetSeq()})
		require.NoError(t, err)
		for _, u := range []*user{alice, bob, carol} {
			got, next, err := u.client().Search(t.Context(), "hunter2", "", "", 0)
			require.NoError(t, err)
			require.Empty(t, got)
			require.Empty(t, next)
		}
		require.Len(t, searchAll(t, carol.client(), "offsite", "", 0), 7)
	})

	t.Run("time_range", func(t *testing.T) {
		res, err := bob.client().Chat().SearchMessages(t.Context(), &parleyv1.SearchMessagesRequest{
			Query: "offsite", To: later[0].GetCreatedAt(),
		})
		require.NoError(t, err)
		for _, r := range res.GetResults() {
			require.True(t, r.GetCreatedAt().AsTime().Before(later[0].GetCreatedAt().AsTime()))
		}
		require.NotEmpty(t, res.GetResults())
	})

	t.Run("bad_input", func(t *testing.T) {
		_, token, err := bob.client().Search(t.Context(), "offsite", "", "", 1)
		require.NoError(t, err)
		require.NotEmpty(t, token)
		now := timestamppb.Now()
		for _, tc := range []struct {
			name  string
			req   *parleyv1.SearchMessagesRequest
			code  connect.Code
			field string
		}{
			{"empty_query", &parleyv1.SearchMessagesRequest{}, connect.CodeInvalidArgument, "query"},
			{"no_words", &parleyv1.SearchMessagesRequest{Query: `"*" ()`}, connect.CodeInvalidArgument, "query"},
			{"long_query", &parleyv1.SearchMessagesRequest{Query: strings.Repeat("a", 257)}, connect.CodeInvalidArgument, "query"},
			{"page_size", &parleyv1.SearchMessagesRequest{Query: "offsite", PageSize: 101}, connect.CodeInvalidArgument, "page_size"},
			{"garbled_token", &parleyv1.SearchMessagesRequest{Query: "offsite", PageToken: "%%%not-a-token"}, connect.CodeInvalidArgument, "page_token"},
			{"short_token", &parleyv1.SearchMessagesRequest{Query: "offsite", PageToken: "AQ"}, connect.CodeInvalidArgument, "page_token"},
			{"token_of_other_query", &parleyv1.SearchMessagesRequest{Query: "zurich", PageToken: token}, connect.CodeInvalidArgument, "page_token"},
			{"not_a_member", &parleyv1.SearchMessagesRequest{Query: "offsite", ConversationId: dm}, connect.CodeNotFound, "conversation_id"},
			{"unknown_conversation", &parleyv1.SearchMessagesRequest{Query: "offsite", ConversationId: "nope"}, connect.CodeNotFound, "conversation_id"},
			{"reversed_range", &parleyv1.SearchMessagesRequest{Query: "offsite", From: now, To: now}, connect.CodeInvalidArgument, "to"},
			{"bad_time", &parleyv1.SearchMessagesRequest{Query: "offsite", From: &timestamppb.Timestamp{Nanos: -1}}, connect.CodeInvalidArgument, "from"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := carol.client().Chat().SearchMessages(t.Context(), tc.req)
				require.Equal(t, tc.code, connect.CodeOf(err), "%v", err)
				var ce *connect.Error
				require.ErrorAs(t, err, &ce)
				// The handler's messages start with the field; protovalidate's
				// read "validation error: field: ...".
				msg := strings.TrimPrefix(ce.Message(), "validation error: ")
				require.True(t, strings.HasPrefix(msg, tc.field+":"), "%q names %s", ce.Message(), tc.field)
			})
		}
	})
}
