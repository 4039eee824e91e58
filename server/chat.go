package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/auth"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/server/wire"
	"github.com/parley-im/parley/storage"
)

const (
	defaultHistoryLimit = 50
	maxHistoryLimit     = 200
	// maxPageBytes bounds an encoded history page well under the 4 MiB
	// that Connect and gRPC clients accept by default.
	maxPageBytes = 3 << 20
)

// chatService implements parleyv1connect.ChatServiceHandler. The stream
// and unary paths share one engine, so a browser on Subscribe and a phone
// on Connect see the same messages in the same order.
type chatService struct {
	parleyv1connect.UnimplementedChatServiceHandler
	s *Server
}

func (c *chatService) Connect(ctx context.Context, stream parleyv1connect.ChatServiceConnectServerStream) error {
	frames := make(chan frameOrErr)
	stop := make(chan struct{})
	defer close(stop)
	// The reader blocks in Receive, which only returns once the client
	// sends or the handler has returned; it is counted in s.sessions so
	// shutdown waits for it.
	c.s.sessions.Go(func() {
		for {
			req, err := stream.Receive()
			var fe frameOrErr
			if err != nil {
				fe.err = err
			} else {
				fe.frame = req.GetFrame()
				if fe.frame == nil {
					fe.frame = &parleyv1.ClientFrame{}
				}
			}
			select {
			case frames <- fe:
			case <-stop:
				return
			}
			if err != nil {
				return
			}
		}
	})
	c.s.sessions.Add(1)
	defer c.s.sessions.Done()
	return c.s.runSession(ctx, metrics.ProcConnect, func(f *parleyv1.ServerFrame) error {
		return stream.Send(&parleyv1.ConnectResponse{Frame: f})
	}, frames)
}

func (c *chatService) Subscribe(ctx context.Context, _ *parleyv1.SubscribeRequest, stream parleyv1connect.ChatServiceSubscribeServerStream) error {
	c.s.sessions.Add(1)
	defer c.s.sessions.Done()
	return c.s.runSession(ctx, metrics.ProcSubscribe, func(f *parleyv1.ServerFrame) error {
		return stream.Send(&parleyv1.SubscribeResponse{Frame: f})
	}, nil)
}

func (c *chatService) SendMessage(ctx context.Context, req *parleyv1.SendMessageRequest) (*parleyv1.SendMessageResponse, error) {
	id := mustIdentity(ctx)
	if err := c.s.allowSend(id.DeviceID); err != nil {
		return nil, c.s.sendFailed(err)
	}
	msg, err := c.s.newMessage(ctx, id, req.GetConversationId(), req.GetClientMsgId(), req.GetContent())
	if err != nil {
		return nil, c.s.sendFailed(err)
	}
	res, err := c.s.engine.Send(ctx, msg)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return nil, c.s.sendFailed(toConnect(ctx, c.s.logger, "SendMessage", err))
	}
	return &parleyv1.SendMessageResponse{Message: wire.Message(res.Message), Duplicate: res.Duplicate}, nil
}

func (c *chatService) Ack(ctx context.Context, req *parleyv1.AckRequest) (*parleyv1.AckResponse, error) {
	if err := c.s.ack(ctx, mustIdentity(ctx), req.GetConversationId(), req.GetSeq()); err != nil {
		return nil, err
	}
	return &parleyv1.AckResponse{}, nil
}

func (c *chatService) MarkRead(ctx context.Context, req *parleyv1.MarkReadRequest) (*parleyv1.MarkReadResponse, error) {
	last, err := c.s.markRead(ctx, mustIdentity(ctx), req.GetConversationId(), req.GetSeq())
	if err != nil {
		return nil, err
	}
	return &parleyv1.MarkReadResponse{LastReadSeq: last}, nil
}

func (c *chatService) SetTyping(ctx context.Context, req *parleyv1.SetTypingRequest) (*parleyv1.SetTypingResponse, error) {
	if err := c.s.typing(ctx, mustIdentity(ctx), req.GetConversationId(), req.GetTyping()); err != nil {
		return nil, err
	}
	return &parleyv1.SetTypingResponse{}, nil
}

func (c *chatService) RecallMessage(ctx context.Context, req *parleyv1.RecallMessageRequest) (*parleyv1.RecallMessageResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	member, err := s.store.GetMember(ctx, req.GetConversationId(), id.UserID)
	if err != nil {
		return nil, toConnect(ctx, s.logger, "RecallMessage", err)
	}
	target, err := s.store.GetMessage(ctx, req.GetConversationId(), req.GetSeq())
	if errors.Is(err, storage.ErrNotFound) || (err == nil && target.Seq < member.JoinedSeq) {
		return nil, errMessageNotFound
	}
	if err != nil {
		return nil, toConnect(ctx, s.logger, "RecallMessage", err)
	}
	if target.Kind == storage.MessageSystem {
		return nil, connect.NewError(connect.CodeFailedPrecondition, "seq: system messages cannot be recalled")
	}
	if !target.RecalledAt.IsZero() {
		return nil, connect.NewError(connect.CodeFailedPrecondition, "seq: message already recalled")
	}
	isAdmin := member.Role == storage.RoleAdmin || member.Role == storage.RoleOwner
	switch {
	case isAdmin:
		// Group owners and admins moderate: any message, any time.
	case target.SenderID != id.UserID:
		return nil, connect.NewError(connect.CodePermissionDenied, "only the sender or a group admin can recall this message")
	case s.now().Sub(target.CreatedAt) > s.cfg.RecallWindow:
		return nil, connect.NewError(connect.CodePermissionDenied, fmt.Sprintf("the recall window of %s has passed", s.cfg.RecallWindow))
	}
	notice := s.systemMessage(id, req.GetConversationId(), &parleyv1.SystemEvent{Event: &parleyv1.SystemEvent_MessageRecalled{
		MessageRecalled: &parleyv1.MessageRecalled{Seq: req.GetSeq(), ActorId: id.UserID},
	}})
	committed, err := s.engine.Recall(ctx, req.GetConversationId(), req.GetSeq(), notice)
	if errors.Is(err, storage.ErrConflict) {
		return nil, connect.NewError(connect.CodeFailedPrecondition, "seq: message already recalled")
	}
	if err != nil {
		return nil, toConnect(ctx, s.logger, "RecallMessage", err)
	}
	return &parleyv1.RecallMessageResponse{Notice: wire.Message(committed)}, nil
}

func (c *chatService) GetHistory(ctx context.Context, req *parleyv1.GetHistoryRequest) (*parleyv1.GetHistoryResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	member, err := s.store.GetMember(ctx, req.GetConversationId(), id.UserID)
	if err != nil {
		return nil, toConnect(ctx, s.logger, "GetHistory", err)
	}
	limit := int(req.GetLimit())
	if limit == 0 {
		limit = defaultHistoryLimit
	}
	limit = min(limit, maxHistoryLimit)
	dir := storage.Before
	if req.GetDirection() == parleyv1.HistoryDirection_HISTORY_DIRECTION_AFTER {
		dir = storage.After
	}
	msgs, more, err := s.store.History(ctx, storage.HistoryQuery{
		ConversationID: req.GetConversationId(),
		Anchor:         req.GetAnchorSeq(),
		Direction:      dir,
		Limit:          limit,
		MinSeq:         member.JoinedSeq,
	})
	if err != nil {
		return nil, toConnect(ctx, s.logger, "GetHistory", err)
	}
	page := wire.Messages(msgs)
	if kept := fitPage(page, dir); kept < len(page) {
		// Keep the part next to the anchor, so the client's next page
		// (anchored at this page's edge) picks up the rest.
		if dir == storage.Before {
			page = page[len(page)-kept:]
		} else {
			page = page[:kept]
		}
		more = true
	}
	return &parleyv1.GetHistoryResponse{Messages: page, HasMore: more}, nil
}

// fitPage returns how many messages of page, counted from the anchor's
// side, fit in maxPageBytes. 200 messages of 64 KiB would exceed the
// 4 MiB message limit clients have by default. At least one message is
// always kept, so paging makes progress.
func fitPage(page []*parleyv1.Message, dir storage.Direction) int {
	total := 0
	for i := range page {
		m := page[i]
		if dir == storage.Before {
			m = page[len(page)-1-i]
		}
		total += proto.Size(m) + 8 // field tag and length prefix, generously
		if total > maxPageBytes && i > 0 {
			return i
		}
	}
	return len(page)
}

// sendFailed counts a SendMessage call refused or failed with err, and
// returns err.
func (s *Server) sendFailed(err error) error {
	code, _ := wireError(err)
	s.streams.SendError(code)
	return err
}

// newMessage checks a send's content and builds the message to commit.
// Membership is checked by the store inside the commit. An image or file
// must be media the sender can read; its description is the server's, not
// the client's.
func (s *Server) newMessage(ctx context.Context, id auth.Identity, conversationID, clientMsgID string, content *parleyv1.Content) (storage.NewMessage, error) {
	var mediaID string
	var searchText string
	switch b := content.GetBody().(type) {
	case *parleyv1.Content_Text:
		searchText = b.Text
	case *parleyv1.Content_Image, *parleyv1.Content_File:
		if s.media == nil {
			return storage.NewMessage{}, errMediaUnsupported
		}
		img, isImage := b.(*parleyv1.Content_Image)
		field, ref := "content.file", content.GetFile()
		if isImage {
			field, ref = "content.image", img.Image
		}
		checked, err := s.media.mediaRef(ctx, id.UserID, ref, isImage, field)
		if err != nil {
			return storage.NewMessage{}, err
		}
		if isImage {
			content = &parleyv1.Content{Body: &parleyv1.Content_Image{Image: checked}}
		} else {
			content = &parleyv1.Content{Body: &parleyv1.Content_File{File: checked}}
		}
		mediaID = checked.GetMediaId()
		searchText = checked.GetCaption()
	default:
		return storage.NewMessage{}, connect.NewError(connect.CodeInvalidArgument, "content: a body is required")
	}
	body, kind, err := wire.EncodeContent(content)
	if err != nil {
		return storage.NewMessage{}, connect.NewError(connect.CodeInvalidArgument, "content: cannot be encoded")
	}
	return storage.NewMessage{
		ID:             uuid.Must(uuid.NewV7()).String(),
		ConversationID: conversationID,
		SenderID:       id.UserID,
		SenderDeviceID: id.DeviceID,
		ClientMsgID:    clientMsgID,
		Kind:           kind,
		Body:           body,
		MediaID:        mediaID,
		CreatedAt:      s.now(),
		SearchText:     searchText,
	}, nil
}

// systemMessage builds a server-written message recording e.
func (s *Server) systemMessage(actor auth.Identity, conversationID string, e *parleyv1.SystemEvent) storage.NewMessage {
	return storage.NewMessage{
		ID:             uuid.Must(uuid.NewV7()).String(),
		ConversationID: conversationID,
		SenderID:       actor.UserID,
		SenderDeviceID: actor.DeviceID,
		Kind:           storage.MessageSystem,
		Body:           wire.EncodeSystem(e),
		CreatedAt:      s.now(),
	}
}

// ack records a device's progress after checking it cannot skip ahead of
// what exists: a cursor past the last message would hide future ones.
func (s *Server) ack(ctx context.Context, id auth.Identity, conversationID string, seq uint64) error {
	if _, err := s.store.GetMember(ctx, conversationID, id.UserID); err != nil {
		return toConnect(ctx, s.logger, "Ack", err)
	}
	conv, err := s.store.GetConversation(ctx, conversationID)
	if err != nil {
		return toConnect(ctx, s.logger, "Ack", err)
	}
	if seq > conv.LastSeq {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Sprintf("seq: %d is beyond the conversation's last message (%d)", seq, conv.LastSeq))
	}
	s.engine.Ack(id.DeviceID, conversationID, seq)
	return nil
}

func (s *Server) markRead(ctx context.Context, id auth.Identity, conversationID string, seq uint64) (uint64, error) {
	last, err := s.engine.MarkRead(ctx, conversationID, id.UserID, seq)
	if err != nil {
		return 0, toConnect(ctx, s.logger, "MarkRead", err)
	}
	return last, nil
}

func (s *Server) typing(ctx context.Context, id auth.Identity, conversationID string, typing bool) error {
	if _, err := s.store.GetMember(ctx, conversationID, id.UserID); err != nil {
		return toConnect(ctx, s.logger, "SetTyping", err)
	}
	if err := s.engine.Typing(ctx, conversationID, id.UserID, typing); err != nil {
		return toConnect(ctx, s.logger, "SetTyping", err)
	}
	return nil
}

// directPeers lists the users who share a direct conversation with userID:
// the ones who see each other's presence.
func (s *Server) directPeers(ctx context.Context, userID string) []string {
	peers, err := s.store.DirectPeers(ctx, userID)
	if err != nil {
		s.logger.Warn("list peers for presence", "user_id", userID, "err", err)
		return []string{}
	}
	return peers
}

// introducePeers tells two users who just got a direct conversation
// whether the other is online: their open streams chose whose presence to
// follow when they opened, before the conversation existed. Later changes
// reach them as for any peer (see session.finish).
func (s *Server) introducePeers(ctx context.Context, a, b string) {
	online := s.presence.Online(ctx, []string{a, b})
	var ds []hub.Delivery
	if online[a] {
		ds = append(ds, hub.Delivery{Frame: presenceFrame(a, true, time.Time{}), Users: []string{b}})
	}
	if online[b] {
		ds = append(ds, hub.Delivery{Frame: presenceFrame(b, true, time.Time{}), Users: []string{a}})
	}
	if len(ds) > 0 {
		s.router.Route(ctx, ds)
	}
}

func (s *Server) notifyPeers(ctx context.Context, peers []string, f *parleyv1.ServerFrame) {
	if len(peers) > 0 {
		s.router.Route(ctx, []hub.Delivery{{Frame: f, Users: peers}})
	}
}

// mustIdentity returns the caller; the auth interceptor guarantees one on
// every procedure served here.
func mustIdentity(ctx context.Context) auth.Identity {
	id, _ := auth.IdentityFrom(ctx)
	return id
}

// invalidArgument turns a protovalidate failure into InvalidArgument naming
// the field.
func invalidArgument(err error) error {
	var ve *protovalidate.ValidationError
	if errors.As(err, &ve) && len(ve.Violations) > 0 {
		v := ve.Violations[0]
		path := protovalidate.FieldPathString(v.Proto.GetField())
		return connect.NewError(connect.CodeInvalidArgument, fmt.Sprintf("%s: %s", path, v.Proto.GetMessage()))
	}
	return connect.NewError(connect.CodeInvalidArgument, "invalid frame")
}
