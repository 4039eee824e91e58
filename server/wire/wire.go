// Package wire converts between storage's domain types and the parley.v1
// API types. Message bodies are stored as encoded protobuf: a Content for
// user messages, a SystemEvent for system messages.
package wire

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage"
)

// EncodeContent returns the stored body and kind for a user's content.
func EncodeContent(c *parleyv1.Content) ([]byte, storage.MessageKind, error) {
	var kind storage.MessageKind
	switch c.GetBody().(type) {
	case *parleyv1.Content_Text:
		kind = storage.MessageText
	case *parleyv1.Content_Image:
		kind = storage.MessageImage
	case *parleyv1.Content_File:
		kind = storage.MessageFile
	default:
		return nil, 0, fmt.Errorf("wire: content has no body")
	}
	b, err := proto.Marshal(c)
	if err != nil {
		return nil, 0, fmt.Errorf("wire: encode content: %w", err)
	}
	return b, kind, nil
}

// EncodeSystem returns the stored body of a system event.
func EncodeSystem(e *parleyv1.SystemEvent) []byte {
	// Marshalling a well-formed generated message cannot fail; a nil
	// result would only show up as an empty event.
	b, _ := proto.Marshal(e)
	return b
}

// Message converts a stored message. A body that does not decode is
// returned without content rather than failing the whole page.
func Message(m storage.Message) *parleyv1.Message {
	out := &parleyv1.Message{
		Id:             m.ID,
		ConversationId: m.ConversationID,
		Seq:            m.Seq,
		SenderId:       m.SenderID,
		SenderDeviceId: m.SenderDeviceID,
		ClientMsgId:    m.ClientMsgID,
		Kind:           parleyv1.MessageKind(m.Kind),
		CreatedAt:      Time(m.CreatedAt),
	}
	if !m.RecalledAt.IsZero() {
		out.Recalled = true
		out.RecalledAt = Time(m.RecalledAt)
		return out
	}
	if m.Kind == storage.MessageSystem {
		var e parleyv1.SystemEvent
		if proto.Unmarshal(m.Body, &e) == nil {
			out.System = &e
		}
		return out
	}
	var c parleyv1.Content
	if proto.Unmarshal(m.Body, &c) == nil {
		out.Content = &c
	}
	return out
}

// Messages converts a page of stored messages.
func Messages(ms []storage.Message) []*parleyv1.Message {
	out := make([]*parleyv1.Message, len(ms))
	for i, m := range ms {
		out[i] = Message(m)
	}
	return out
}

// User converts a stored user, leaving out the password hash.
func User(u storage.User) *parleyv1.User {
	return &parleyv1.User{
		Id:          u.ID,
		Username:    u.Username,
		DisplayName: u.DisplayName,
		CreatedAt:   Time(u.CreatedAt),
	}
}

// Conversation converts a stored conversation.
func Conversation(c storage.Conversation) *parleyv1.Conversation {
	return &parleyv1.Conversation{
		Id:        c.ID,
		Kind:      parleyv1.ConversationKind(c.Kind),
		Title:     c.Title,
		OwnerId:   c.OwnerID,
		LastSeq:   c.LastSeq,
		CreatedAt: Time(c.CreatedAt),
	}
}

// Member converts a membership; u may be zero when the user is unknown.
func Member(m storage.Member, u storage.User) *parleyv1.Member {
	if u.ID == "" {
		u.ID = m.UserID
	}
	return &parleyv1.Member{
		User:        User(u),
		Role:        parleyv1.MemberRole(m.Role),
		JoinedSeq:   m.JoinedSeq,
		LastReadSeq: m.LastReadSeq,
		JoinedAt:    Time(m.JoinedAt),
	}
}

// Time converts a time, mapping the zero time to nil.
func Time(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// MessageFrame wraps a message in a server frame.
func MessageFrame(m *parleyv1.Message) *parleyv1.ServerFrame {
	return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Message{Message: m}}
}
