package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// names resolves user ids to usernames from conversation member lists, asking
// the server once per conversation.
type names struct {
	client *parley.Client
	users  map[string]string
	seen   map[string]bool
}

func newNames(c *parley.Client) *names {
	return &names{client: c, users: map[string]string{}, seen: map[string]bool{}}
}

func (n *names) of(ctx context.Context, conversationID, userID string) string {
	if name, ok := n.users[userID]; ok {
		return name
	}
	if !n.seen[conversationID] {
		n.seen[conversationID] = true
		res, err := n.client.Conversations().GetConversation(ctx, &parleyv1.GetConversationRequest{ConversationId: conversationID})
		if err == nil {
			for _, m := range res.GetMembers() {
				n.users[m.GetUser().GetId()] = m.GetUser().GetUsername()
			}
		}
	}
	if name, ok := n.users[userID]; ok {
		return name
	}
	return userID
}

func formatMessage(ctx context.Context, n *names, m *parleyv1.Message) string {
	at := m.GetCreatedAt().AsTime().Local().Format(time.DateTime)
	who := "*"
	if m.GetKind() != parleyv1.MessageKind_MESSAGE_KIND_SYSTEM {
		who = n.of(ctx, m.GetConversationId(), m.GetSenderId())
	}
	return fmt.Sprintf("%s #%d %s %s: %s", m.GetConversationId(), m.GetSeq(), at, who, body(m))
}

func formatEvent(ctx context.Context, n *names, ev parley.Event) string {
	switch ev := ev.(type) {
	case *parley.ConnectedEvent:
		return "-- connected"
	case *parley.SyncedEvent:
		return "-- up to date"
	case *parley.MessageEvent:
		return formatMessage(ctx, n, ev.Message)
	case *parley.GapEvent:
		return fmt.Sprintf("%s -- %d older messages skipped (see history)", ev.ConversationID, ev.ToSeq-ev.FromSeq)
	case *parley.ReceiptEvent:
		r := ev.Receipt
		return fmt.Sprintf("%s -- %s read up to #%d", r.GetConversationId(), n.of(ctx, r.GetConversationId(), r.GetUserId()), r.GetLastReadSeq())
	case *parley.TypingEvent:
		if !ev.Typing.GetTyping() {
			return ""
		}
		return fmt.Sprintf("%s -- %s is typing", ev.Typing.GetConversationId(), n.of(ctx, ev.Typing.GetConversationId(), ev.Typing.GetUserId()))
	case *parley.PresenceEvent:
		state := "offline"
		if ev.Presence.GetOnline() {
			state = "online"
		}
		return fmt.Sprintf("-- %s is %s", ev.Presence.GetUserId(), state)
	case *parley.ErrorEvent:
		return fmt.Sprintf("-- server error: %s: %s", ev.Error.GetCode(), ev.Error.GetMessage())
	case *parley.EpochChangedEvent:
		return "-- the server's history was reset"
	case *parley.DisconnectedEvent:
		if ev.Final {
			return fmt.Sprintf("-- disconnected: %v", ev.Err)
		}
		return fmt.Sprintf("-- disconnected (%v), retrying in %s", ev.Err, ev.RetryIn.Round(time.Millisecond))
	}
	return ""
}

// body renders a message's content for one line of text.
func body(m *parleyv1.Message) string {
	if m.GetRecalled() {
		return "(recalled)"
	}
	if s := m.GetSystem(); s != nil {
		switch e := s.GetEvent().(type) {
		case *parleyv1.SystemEvent_GroupCreated:
			return fmt.Sprintf("created group %q", e.GroupCreated.GetTitle())
		case *parleyv1.SystemEvent_MembersAdded:
			return fmt.Sprintf("added %d member(s)", len(e.MembersAdded.GetUserIds()))
		case *parleyv1.SystemEvent_MemberRemoved:
			return "removed a member"
		case *parleyv1.SystemEvent_MemberLeft:
			return "a member left"
		case *parleyv1.SystemEvent_MessageRecalled:
			return fmt.Sprintf("recalled #%d", e.MessageRecalled.GetSeq())
		}
		return "(system)"
	}
	c := m.GetContent()
	switch {
	case c.GetImage() != nil:
		return mediaLine("image", c.GetImage())
	case c.GetFile() != nil:
		return mediaLine("file", c.GetFile())
	}
	return strings.ReplaceAll(c.GetText(), "\n", " ⏎ ")
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
