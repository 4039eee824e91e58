package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/storage"
)

// op is a storage.Store method.
type op int

// One op per storage.Store method (Close aside).
const (
	opEpoch op = iota
	opCreateUser
	opGetUser
	opGetUserByUsername
	opGetUsers
	opCreateDevice
	opGetDevice
	opRotateRefreshToken
	opRevokeDevice
	opListDevices
	opGetOrCreateDirect
	opCreateGroup
	opGetConversation
	opGetMember
	opListMembers
	opAddMembers
	opRemoveMember
	opDirectPeers
	opListConversations
	opMarkRead
	opAppendMessages
	opGetMessage
	opRecallMessage
	opHistory
	opSaveCursors
	opBacklogs
	opCreateMedia
	opTouchBlobs
	opGetMedia
	opCanReadMedia
	opSweepMedia
	opSearchMessages
	numOps
)

var opNames = [numOps]string{
	"epoch",
	"create_user",
	"get_user",
	"get_user_by_username",
	"get_users",
	"create_device",
	"get_device",
	"rotate_refresh_token",
	"revoke_device",
	"list_devices",
	"get_or_create_direct",
	"create_group",
	"get_conversation",
	"get_member",
	"list_members",
	"add_members",
	"remove_member",
	"direct_peers",
	"list_conversations",
	"mark_read",
	"append_messages",
	"get_message",
	"recall_message",
	"history",
	"save_cursors",
	"backlogs",
	"create_media",
	"touch_blobs",
	"get_media",
	"can_read_media",
	"sweep_media",
	"search_messages"}

// Store is the latency and failures of the store's operations.
type Store struct {
	duration [numOps]prometheus.Observer
	errors   [numOps]prometheus.Counter
}

func newStore(r *registrar) *Store {
	d := r.histogramVec("store", "op_duration_seconds",
		"Latency of store operations (one query or transaction each), failed ones included, by op.", ioBuckets, "op")
	e := r.counterVec("store", "op_errors_total",
		"Store operations that failed: the store was unavailable or answered unexpectedly. Domain outcomes (not found, conflict, not a member, ...) and cancelled calls are not counted.", "op")
	s := &Store{}
	for i, name := range opNames {
		s.duration[i] = d.WithLabelValues(name)
		s.errors[i] = e.WithLabelValues(name)
	}
	return s
}

// InstrumentStore returns st with every operation timed and its failures
// counted in m. A nil m returns st itself.
func InstrumentStore(st storage.Store, m *Store) storage.Store {
	if m == nil {
		return st
	}
	return &store{Store: st, m: m}
}

// done records one operation that started at start and returned err.
func (m *Store) done(o op, start time.Time, err error) {
	m.duration[o].Observe(time.Since(start).Seconds())
	if err != nil && !expected(err) {
		m.errors[o].Inc()
	}
}

// expected reports whether err is an answer rather than a failure: a
// domain sentinel, or the caller's context ending.
func expected(err error) bool {
	for _, e := range [...]error{
		storage.ErrNotFound, storage.ErrConflict, storage.ErrNotMember, storage.ErrGroupFull,
		storage.ErrNotGroup, storage.ErrRevoked, storage.ErrTokenReused,
		context.Canceled, context.DeadlineExceeded,
	} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// store is a storage.Store that records every call in m. Methods added to
// storage.Store later pass through the embedded Store untimed until they
// are listed here.
type store struct {
	storage.Store
	m *Store
}

func (s *store) Epoch(ctx context.Context) (string, error) {
	start := time.Now()
	r0, err := s.Store.Epoch(ctx)
	s.m.done(opEpoch, start, err)
	return r0, err
}

func (s *store) CreateUser(ctx context.Context, u storage.User) error {
	start := time.Now()
	err := s.Store.CreateUser(ctx, u)
	s.m.done(opCreateUser, start, err)
	return err
}

func (s *store) GetUser(ctx context.Context, id string) (storage.User, error) {
	start := time.Now()
	r0, err := s.Store.GetUser(ctx, id)
	s.m.done(opGetUser, start, err)
	return r0, err
}

func (s *store) GetUserByUsername(ctx context.Context, username string) (storage.User, error) {
	start := time.Now()
	r0, err := s.Store.GetUserByUsername(ctx, username)
	s.m.done(opGetUserByUsername, start, err)
	return r0, err
}

func (s *store) GetUsers(ctx context.Context, ids []string) ([]storage.User, error) {
	start := time.Now()
	r0, err := s.Store.GetUsers(ctx, ids)
	s.m.done(opGetUsers, start, err)
	return r0, err
}

func (s *store) CreateDevice(ctx context.Context, d storage.Device, first storage.RefreshToken) error {
	start := time.Now()
	err := s.Store.CreateDevice(ctx, d, first)
	s.m.done(opCreateDevice, start, err)
	return err
}

func (s *store) GetDevice(ctx context.Context, id string) (storage.Device, error) {
	start := time.Now()
	r0, err := s.Store.GetDevice(ctx, id)
	s.m.done(opGetDevice, start, err)
	return r0, err
}

func (s *store) RotateRefreshToken(ctx context.Context, oldHash []byte, next storage.RefreshToken, now time.Time) (storage.Device, error) {
	start := time.Now()
	r0, err := s.Store.RotateRefreshToken(ctx, oldHash, next, now)
	s.m.done(opRotateRefreshToken, start, err)
	return r0, err
}

func (s *store) RevokeDevice(ctx context.Context, id string, now time.Time) error {
	start := time.Now()
	err := s.Store.RevokeDevice(ctx, id, now)
	s.m.done(opRevokeDevice, start, err)
	return err
}

func (s *store) ListDevices(ctx context.Context, userID string) ([]storage.Device, error) {
	start := time.Now()
	r0, err := s.Store.ListDevices(ctx, userID)
	s.m.done(opListDevices, start, err)
	return r0, err
}

func (s *store) GetOrCreateDirect(ctx context.Context, id, a, b string, now time.Time) (storage.Conversation, bool, error) {
	start := time.Now()
	r0, r1, err := s.Store.GetOrCreateDirect(ctx, id, a, b, now)
	s.m.done(opGetOrCreateDirect, start, err)
	return r0, r1, err
}

func (s *store) CreateGroup(ctx context.Context, g storage.NewGroup) (storage.Conversation, storage.Message, error) {
	start := time.Now()
	r0, r1, err := s.Store.CreateGroup(ctx, g)
	s.m.done(opCreateGroup, start, err)
	return r0, r1, err
}

func (s *store) GetConversation(ctx context.Context, id string) (storage.Conversation, error) {
	start := time.Now()
	r0, err := s.Store.GetConversation(ctx, id)
	s.m.done(opGetConversation, start, err)
	return r0, err
}

func (s *store) GetMember(ctx context.Context, conversationID, userID string) (storage.Member, error) {
	start := time.Now()
	r0, err := s.Store.GetMember(ctx, conversationID, userID)
	s.m.done(opGetMember, start, err)
	return r0, err
}

func (s *store) ListMembers(ctx context.Context, conversationID string) ([]storage.Member, error) {
	start := time.Now()
	r0, err := s.Store.ListMembers(ctx, conversationID)
	s.m.done(opListMembers, start, err)
	return r0, err
}

func (s *store) AddMembers(ctx context.Context, conversationID string, userIDs []string, maxMembers int, notice storage.NewMessage) (storage.Message, error) {
	start := time.Now()
	r0, err := s.Store.AddMembers(ctx, conversationID, userIDs, maxMembers, notice)
	s.m.done(opAddMembers, start, err)
	return r0, err
}

func (s *store) RemoveMember(ctx context.Context, conversationID, userID string, notice storage.NewMessage) (storage.Message, error) {
	start := time.Now()
	r0, err := s.Store.RemoveMember(ctx, conversationID, userID, notice)
	s.m.done(opRemoveMember, start, err)
	return r0, err
}

func (s *store) DirectPeers(ctx context.Context, userID string) ([]string, error) {
	start := time.Now()
	r0, err := s.Store.DirectPeers(ctx, userID)
	s.m.done(opDirectPeers, start, err)
	return r0, err
}

func (s *store) ListConversations(ctx context.Context, userID string) ([]storage.ConversationSummary, error) {
	start := time.Now()
	r0, err := s.Store.ListConversations(ctx, userID)
	s.m.done(opListConversations, start, err)
	return r0, err
}

func (s *store) MarkRead(ctx context.Context, conversationID, userID string, seq uint64) (uint64, bool, error) {
	start := time.Now()
	r0, r1, err := s.Store.MarkRead(ctx, conversationID, userID, seq)
	s.m.done(opMarkRead, start, err)
	return r0, r1, err
}

func (s *store) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	start := time.Now()
	r0, err := s.Store.AppendMessages(ctx, msgs)
	s.m.done(opAppendMessages, start, err)
	return r0, err
}

func (s *store) GetMessage(ctx context.Context, conversationID string, seq uint64) (storage.Message, error) {
	start := time.Now()
	r0, err := s.Store.GetMessage(ctx, conversationID, seq)
	s.m.done(opGetMessage, start, err)
	return r0, err
}

func (s *store) RecallMessage(ctx context.Context, conversationID string, seq uint64, notice storage.NewMessage) (storage.Message, storage.Message, error) {
	start := time.Now()
	r0, r1, err := s.Store.RecallMessage(ctx, conversationID, seq, notice)
	s.m.done(opRecallMessage, start, err)
	return r0, r1, err
}

func (s *store) History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	start := time.Now()
	r0, r1, err := s.Store.History(ctx, q)
	s.m.done(opHistory, start, err)
	return r0, r1, err
}

func (s *store) SearchMessages(ctx context.Context, q storage.SearchQuery) ([]storage.SearchHit, bool, error) {
	start := time.Now()
	r0, r1, err := s.Store.SearchMessages(ctx, q)
	s.m.done(opSearchMessages, start, err)
	return r0, r1, err
}

func (s *store) SaveCursors(ctx context.Context, cursors []storage.Cursor) error {
	start := time.Now()
	err := s.Store.SaveCursors(ctx, cursors)
	s.m.done(opSaveCursors, start, err)
	return err
}

func (s *store) Backlogs(ctx context.Context, userID, deviceID string) ([]storage.Backlog, error) {
	start := time.Now()
	r0, err := s.Store.Backlogs(ctx, userID, deviceID)
	s.m.done(opBacklogs, start, err)
	return r0, err
}

func (s *store) CreateMedia(ctx context.Context, m storage.Media) error {
	start := time.Now()
	err := s.Store.CreateMedia(ctx, m)
	s.m.done(opCreateMedia, start, err)
	return err
}

func (s *store) TouchBlobs(ctx context.Context, keys []string, now time.Time) error {
	start := time.Now()
	err := s.Store.TouchBlobs(ctx, keys, now)
	s.m.done(opTouchBlobs, start, err)
	return err
}

func (s *store) GetMedia(ctx context.Context, id string) (storage.Media, error) {
	start := time.Now()
	r0, err := s.Store.GetMedia(ctx, id)
	s.m.done(opGetMedia, start, err)
	return r0, err
}

func (s *store) CanReadMedia(ctx context.Context, userID, mediaID string) (bool, error) {
	start := time.Now()
	r0, err := s.Store.CanReadMedia(ctx, userID, mediaID)
	s.m.done(opCanReadMedia, start, err)
	return r0, err
}

func (s *store) SweepMedia(ctx context.Context, olderThan time.Time, limit int) ([]string, error) {
	start := time.Now()
	r0, err := s.Store.SweepMedia(ctx, olderThan, limit)
	s.m.done(opSweepMedia, start, err)
	return r0, err
}
