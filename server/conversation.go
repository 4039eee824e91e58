package server

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/auth"
	"github.com/parley-im/parley/server/wire"
	"github.com/parley-im/parley/storage"
)

// conversationService implements parleyv1connect.ConversationServiceHandler.
type conversationService struct {
	parleyv1connect.UnimplementedConversationServiceHandler
	s *Server
}

func (c *conversationService) CreateDirect(ctx context.Context, req *parleyv1.CreateDirectRequest) (*parleyv1.CreateDirectResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	var peer storage.User
	var err error
	if req.GetUsername() != "" {
		peer, err = s.store.GetUserByUsername(ctx, req.GetUsername())
	} else {
		peer, err = s.store.GetUser(ctx, req.GetUserId())
	}
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUserNotFound
	}
	if err != nil {
		return nil, toConnect(ctx, s.logger, "CreateDirect", err)
	}
	if peer.ID == id.UserID {
		return nil, connect.NewError(connect.CodeInvalidArgument, "peer: cannot start a direct conversation with yourself")
	}
	conv, created, err := s.store.GetOrCreateDirect(ctx, uuid.Must(uuid.NewV7()).String(), id.UserID, peer.ID, s.now())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, errUserNotFound
	}
	if err != nil {
		return nil, toConnect(ctx, s.logger, "CreateDirect", err)
	}
	if created {
		s.introducePeers(ctx, id.UserID, peer.ID)
	}
	return &parleyv1.CreateDirectResponse{Conversation: wire.Conversation(conv), Created: created}, nil
}

func (c *conversationService) CreateGroup(ctx context.Context, req *parleyv1.CreateGroupRequest) (*parleyv1.CreateGroupResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	convID := uuid.Must(uuid.NewV7()).String()
	conv, err := s.engine.CreateGroup(ctx, storage.NewGroup{
		ID:      convID,
		Title:   req.GetTitle(),
		OwnerID: id.UserID,
		// The store ignores the owner among them and enforces the size.
		MemberIDs:  req.GetMemberIds(),
		CreatedAt:  s.now(),
		MaxMembers: s.cfg.MaxGroupSize,
		Notice: s.systemMessage(id, convID, &parleyv1.SystemEvent{Event: &parleyv1.SystemEvent_GroupCreated{
			GroupCreated: &parleyv1.GroupCreated{Title: req.GetTitle(), OwnerId: id.UserID},
		}}),
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, connect.NewError(connect.CodeNotFound, "member_ids: a user does not exist")
	case errors.Is(err, storage.ErrGroupFull):
		return nil, connect.NewError(connect.CodeInvalidArgument, fmt.Sprintf("member_ids: a group has at most %d members", s.cfg.MaxGroupSize))
	case err != nil:
		return nil, toConnect(ctx, s.logger, "CreateGroup", err)
	}
	return &parleyv1.CreateGroupResponse{Conversation: wire.Conversation(conv)}, nil
}

func (c *conversationService) AddMembers(ctx context.Context, req *parleyv1.AddMembersRequest) (*parleyv1.AddMembersResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	if err := c.requireAdmin(ctx, id, req.GetConversationId()); err != nil {
		return nil, err
	}
	notice := s.systemMessage(id, req.GetConversationId(), &parleyv1.SystemEvent{Event: &parleyv1.SystemEvent_MembersAdded{
		MembersAdded: &parleyv1.MembersAdded{ActorId: id.UserID, UserIds: req.GetUserIds()},
	}})
	msg, err := s.engine.AddMembers(ctx, req.GetConversationId(), req.GetUserIds(), s.cfg.MaxGroupSize, notice)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, connect.NewError(connect.CodeNotFound, "user_ids: a user does not exist")
	case errors.Is(err, storage.ErrConflict):
		return nil, connect.NewError(connect.CodeAlreadyExists, "user_ids: already members")
	case errors.Is(err, storage.ErrGroupFull):
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Sprintf("user_ids: a group has at most %d members", s.cfg.MaxGroupSize))
	case err != nil:
		return nil, toConnect(ctx, s.logger, "AddMembers", err)
	}
	return &parleyv1.AddMembersResponse{Seq: msg.Seq}, nil
}

func (c *conversationService) RemoveMember(ctx context.Context, req *parleyv1.RemoveMemberRequest) (*parleyv1.RemoveMemberResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	if err := c.requireAdmin(ctx, id, req.GetConversationId()); err != nil {
		return nil, err
	}
	target, err := s.store.GetMember(ctx, req.GetConversationId(), req.GetUserId())
	if errors.Is(err, storage.ErrNotMember) {
		return nil, connect.NewError(connect.CodeNotFound, "user_id: not a member")
	}
	if err != nil {
		return nil, toConnect(ctx, s.logger, "RemoveMember", err)
	}
	if target.Role == storage.RoleOwner {
		return nil, connect.NewError(connect.CodePermissionDenied, "user_id: the owner cannot be removed")
	}
	notice := s.systemMessage(id, req.GetConversationId(), &parleyv1.SystemEvent{Event: &parleyv1.SystemEvent_MemberRemoved{
		MemberRemoved: &parleyv1.MemberRemoved{ActorId: id.UserID, UserId: req.GetUserId()},
	}})
	msg, err := s.engine.RemoveMember(ctx, req.GetConversationId(), req.GetUserId(), notice)
	if errors.Is(err, storage.ErrNotMember) {
		return nil, connect.NewError(connect.CodeNotFound, "user_id: not a member")
	}
	if err != nil {
		return nil, toConnect(ctx, s.logger, "RemoveMember", err)
	}
	return &parleyv1.RemoveMemberResponse{Seq: msg.Seq}, nil
}

func (c *conversationService) Leave(ctx context.Context, req *parleyv1.LeaveRequest) (*parleyv1.LeaveResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	conv, me, err := c.membership(ctx, id, req.GetConversationId())
	if err != nil {
		return nil, err
	}
	if conv.Kind != storage.KindGroup {
		return nil, connect.NewError(connect.CodeFailedPrecondition, "conversation_id: only groups can be left")
	}
	if me.Role == storage.RoleOwner {
		return nil, connect.NewError(connect.CodeFailedPrecondition, "conversation_id: the owner cannot leave the group")
	}
	notice := s.systemMessage(id, req.GetConversationId(), &parleyv1.SystemEvent{Event: &parleyv1.SystemEvent_MemberLeft{
		MemberLeft: &parleyv1.MemberLeft{UserId: id.UserID},
	}})
	if _, err := s.engine.RemoveMember(ctx, req.GetConversationId(), id.UserID, notice); err != nil {
		return nil, toConnect(ctx, s.logger, "Leave", err)
	}
	return &parleyv1.LeaveResponse{}, nil
}

func (c *conversationService) ListConversations(ctx context.Context, _ *parleyv1.ListConversationsRequest) (*parleyv1.ListConversationsResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	rows, err := s.store.ListConversations(ctx, id.UserID)
	if err != nil {
		return nil, toConnect(ctx, s.logger, "ListConversations", err)
	}
	var peerIDs []string
	for _, r := range rows {
		if r.PeerID != "" {
			peerIDs = append(peerIDs, r.PeerID)
		}
	}
	users, err := c.usersByID(ctx, peerIDs)
	if err != nil {
		return nil, toConnect(ctx, s.logger, "ListConversations", err)
	}
	out := &parleyv1.ListConversationsResponse{Conversations: make([]*parleyv1.ConversationSummary, 0, len(rows))}
	for _, r := range rows {
		sum := &parleyv1.ConversationSummary{
			Conversation: wire.Conversation(r.Conversation),
			UnreadCount:  r.Unread,
			LastReadSeq:  r.Self.LastReadSeq,
		}
		if r.LastMessage != nil {
			sum.LastMessage = wire.Message(*r.LastMessage)
		}
		if u, ok := users[r.PeerID]; ok {
			sum.Peer = wire.User(u)
		}
		out.Conversations = append(out.Conversations, sum)
	}
	return out, nil
}

func (c *conversationService) GetConversation(ctx context.Context, req *parleyv1.GetConversationRequest) (*parleyv1.GetConversationResponse, error) {
	id := mustIdentity(ctx)
	s := c.s
	conv, _, err := c.membership(ctx, id, req.GetConversationId())
	if err != nil {
		return nil, err
	}
	members, err := s.store.ListMembers(ctx, conv.ID)
	if err != nil {
		return nil, toConnect(ctx, s.logger, "GetConversation", err)
	}
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.UserID
	}
	users, err := c.usersByID(ctx, ids)
	if err != nil {
		return nil, toConnect(ctx, s.logger, "GetConversation", err)
	}
	out := &parleyv1.GetConversationResponse{Conversation: wire.Conversation(conv)}
	for _, m := range members {
		out.Members = append(out.Members, wire.Member(m, users[m.UserID]))
	}
	return out, nil
}

func (c *conversationService) LookupUser(ctx context.Context, req *parleyv1.LookupUserRequest) (*parleyv1.LookupUserResponse, error) {
	u, err := c.s.store.GetUserByUsername(ctx, req.GetUsername())
	if errors.Is(err, storage.ErrNotFound) {
		return nil, connect.NewError(connect.CodeNotFound, "username: user not found")
	}
	if err != nil {
		return nil, toConnect(ctx, c.s.logger, "LookupUser", err)
	}
	return &parleyv1.LookupUserResponse{User: wire.User(u)}, nil
}

// membership returns the conversation and the caller's membership, with
// NotFound for both "no such conversation" and "not yours", so callers
// cannot probe which conversations exist.
func (c *conversationService) membership(ctx context.Context, id auth.Identity, conversationID string) (storage.Conversation, storage.Member, error) {
	me, err := c.s.store.GetMember(ctx, conversationID, id.UserID)
	if err != nil {
		return storage.Conversation{}, storage.Member{}, toConnect(ctx, c.s.logger, "membership", err)
	}
	conv, err := c.s.store.GetConversation(ctx, conversationID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Conversation{}, storage.Member{}, errConversationNotFound
	}
	if err != nil {
		return storage.Conversation{}, storage.Member{}, toConnect(ctx, c.s.logger, "membership", err)
	}
	return conv, me, nil
}

// requireAdmin checks the caller may manage the group's members.
func (c *conversationService) requireAdmin(ctx context.Context, id auth.Identity, conversationID string) error {
	conv, me, err := c.membership(ctx, id, conversationID)
	if err != nil {
		return err
	}
	if conv.Kind != storage.KindGroup {
		return connect.NewError(connect.CodeFailedPrecondition, "conversation_id: members of a direct conversation cannot change")
	}
	if me.Role != storage.RoleOwner && me.Role != storage.RoleAdmin {
		return connect.NewError(connect.CodePermissionDenied, "only the group's owner and admins can manage members")
	}
	return nil
}

func (c *conversationService) usersByID(ctx context.Context, ids []string) (map[string]storage.User, error) {
	out := make(map[string]storage.User, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	users, err := c.s.store.GetUsers(ctx, ids)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		out[u.ID] = u
	}
	return out, nil
}
