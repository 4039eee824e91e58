// Package storage defines what Parley needs from a system of record: the
// domain types, the Store interface every backend implements, and the
// sentinel errors backends translate their driver errors into.
//
// Backends live in subpackages (storage/embedded, later storage/postgres)
// and import only this package. The server imports only this package; main
// picks a backend. Every backend passes storage/storagetest.
//
// Message payloads are opaque bytes here: the server encodes them, the
// store keeps them. Times are stored with at least millisecond precision
// and returned in UTC.
package storage

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors. Backends wrap them with context
// (fmt.Errorf("embedded: append message %s: %w", id, err)); callers test
// with errors.Is.
var (
	// ErrNotFound: the named row does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness rule was violated (username taken, member
	// already present).
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the backend cannot be reached or is shutting down;
	// retrying later may succeed.
	ErrUnavailable = errors.New("unavailable")
	// ErrNotMember: the user is not a member of the conversation.
	ErrNotMember = errors.New("not a member")
	// ErrGroupFull: adding members would exceed the group's size limit.
	ErrGroupFull = errors.New("group full")
	// ErrNotGroup: a group-only operation was tried on a direct
	// conversation.
	ErrNotGroup = errors.New("not a group")
	// ErrRevoked: the device session was revoked (logout, token reuse).
	ErrRevoked = errors.New("revoked")
	// ErrTokenReused: a refresh token that was already rotated was
	// presented again. The store has revoked the device as part of the same
	// call.
	ErrTokenReused = errors.New("refresh token reused")
)

// sentinels lists every error above, for IsSentinel.
var sentinels = []error{
	ErrNotFound, ErrConflict, ErrUnavailable, ErrNotMember,
	ErrGroupFull, ErrNotGroup, ErrRevoked, ErrTokenReused,
}

// IsSentinel reports whether err already is (or wraps) one of this
// package's sentinel errors, so a backend translating driver errors can
// leave it alone.
func IsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// ConversationKind says how a conversation is shaped.
type ConversationKind int

const (
	// KindDirect has exactly two members and is unique per pair.
	KindDirect ConversationKind = 1
	// KindGroup has a title, an owner, admins and members.
	KindGroup ConversationKind = 2
)

// Role is a member's authority in a conversation.
type Role int

const (
	RoleMember Role = 1
	RoleAdmin  Role = 2
	RoleOwner  Role = 3
)

// MessageKind mirrors parley.v1.MessageKind.
type MessageKind int

const (
	MessageText   MessageKind = 1
	MessageImage  MessageKind = 2
	MessageFile   MessageKind = 3
	MessageSystem MessageKind = 4
)

// User is an account.
type User struct {
	ID           string
	Username     string
	DisplayName  string
	PasswordHash string // argon2id, PHC string format
	CreatedAt    time.Time
}

// Device is one signed-in installation of a user. Tokens, cursors and
// presence are per device.
type Device struct {
	ID        string
	UserID    string
	Name      string
	CreatedAt time.Time
	// RevokedAt is zero while the session is live.
	RevokedAt time.Time
}

// RefreshToken is the stored form of a refresh token: only its hash.
type RefreshToken struct {
	// Hash is a SHA-256 of the token; the token itself is never stored.
	Hash      []byte
	DeviceID  string
	ExpiresAt time.Time
}

// Conversation is a direct chat or a group.
type Conversation struct {
	ID      string
	Kind    ConversationKind
	Title   string
	OwnerID string
	// LastSeq is the seq of the newest message; 0 when there is none.
	LastSeq   uint64
	CreatedAt time.Time
	// LastMessageAt is the time of the newest message (CreatedAt if none).
	LastMessageAt time.Time
}

// Member is one user's membership of a conversation.
type Member struct {
	ConversationID string
	UserID         string
	Role           Role
	// JoinedSeq is the seq of the message that recorded the join (for a
	// direct conversation, 1: its members see all of it). History before
	// it is hidden from this member.
	JoinedSeq   uint64
	LastReadSeq uint64
	JoinedAt    time.Time
}

// NewMessage is a message to append; the store assigns Seq.
type NewMessage struct {
	// ID is globally unique, chosen by the caller.
	ID             string
	ConversationID string
	SenderID       string
	// SenderDeviceID is empty for system messages written by the server.
	SenderDeviceID string
	// ClientMsgID is the sender's idempotency key: unique per
	// (ConversationID, SenderID). Empty means "not idempotent" (system
	// messages).
	ClientMsgID string
	Kind        MessageKind
	Body        []byte
	// MediaID names the upload an image or file message carries; empty
	// for other messages. It is what lets the conversation's members read
	// the media (MediaStore.CanReadMedia) until the message is recalled.
	MediaID   string
	CreatedAt time.Time
	// SearchText is the message's searchable text: a text message's body,
	// or an image or file's caption; empty for none (system messages).
	// The store indexes it for SearchStore and forgets it on recall. It is
	// not part of Message: readers decode Body.
	SearchText string
}

// Message is a committed message.
type Message struct {
	ID             string
	ConversationID string
	Seq            uint64
	SenderID       string
	SenderDeviceID string
	ClientMsgID    string
	Kind           MessageKind
	// Body is nil once the message is recalled.
	Body []byte
	// MediaID is NewMessage.MediaID; it stays after a recall, but then
	// grants nobody access.
	MediaID   string
	CreatedAt time.Time
	// RecalledAt is zero unless the message was recalled.
	RecalledAt time.Time
	// MembersSeq is the seq of the conversation's newest membership change
	// (group created, members added, a member removed or left) when this
	// message was committed: 0 for a conversation whose membership never
	// changed (direct conversations), and the message's own Seq for a
	// membership notice. A message appended after a change carries that
	// change's seq; one appended before it carries an earlier one, so a
	// process holding a member list read at membership version v knows the
	// list is stale for any message with MembersSeq > v.
	//
	// It is set on messages returned by the writes (AppendMessages,
	// RecallMessage's notice, CreateGroup, AddMembers, RemoveMember), read
	// under the lock that allocates the seq. A duplicate (AppendResult
	// with Duplicate set) carries the conversation's current value, not
	// the one its original was committed under: at least as new, so a
	// cache check on a redelivery errs towards reloading. The recalled
	// message RecallMessage returns and the reads (GetMessage, History,
	// ListConversations' LastMessage) leave it 0, which there means "not
	// reported", not "never changed": the value is kept per conversation,
	// not per message, and only the fan-out of fresh commits needs it.
	//
	// For groups whose membership last changed before this field existed,
	// it is 0 until their next membership change (see the backends'
	// migration 0002).
	MembersSeq uint64
}

// AppendResult is the outcome of one message of an AppendMessages batch.
type AppendResult struct {
	// Message is the committed message: the new one, or the original when
	// Duplicate is true. Zero when Err is set.
	Message Message
	// Duplicate is true when (ConversationID, SenderID, ClientMsgID) had
	// been committed before; nothing new was written.
	Duplicate bool
	// Err is ErrNotMember when the sender is not a member of the
	// conversation (or it does not exist). Other failures fail the whole
	// batch instead.
	Err error
}

// Direction is the way a history page goes from its anchor.
type Direction int

const (
	// Before pages seq < anchor (anchor 0 means "from the newest").
	Before Direction = 1
	// After pages seq > anchor.
	After Direction = 2
)

// HistoryQuery selects a page of one conversation.
type HistoryQuery struct {
	ConversationID string
	Anchor         uint64
	Direction      Direction
	// Limit is at least 1; the store returns at most Limit messages.
	Limit int
	// MinSeq hides messages with seq < MinSeq (the reader's join point).
	MinSeq uint64
}

// Cursor is the highest seq a device acknowledged in a conversation.
type Cursor struct {
	DeviceID       string
	ConversationID string
	Seq            uint64
}

// Backlog is where a device stands in one conversation of its user: what
// it already has and what the conversation holds. The device lacks the
// messages After+1 … LastSeq; none when After == LastSeq.
type Backlog struct {
	ConversationID string
	// After is the seq the device already has: max(cursor, joined_seq-1),
	// never above LastSeq.
	After uint64
	// LastSeq is the conversation's newest seq (≥ After); 0 when it has no
	// message yet.
	LastSeq uint64
}

// ConversationSummary is one row of a user's conversation list.
type ConversationSummary struct {
	Conversation Conversation
	Self         Member
	// LastMessage is nil when no message is visible to the user.
	LastMessage *Message
	// Unread counts visible messages after Self.LastReadSeq not sent by
	// the user.
	Unread uint64
	// PeerID is the other member of a direct conversation.
	PeerID string
}

// NewGroup describes a group to create.
type NewGroup struct {
	ID        string
	Title     string
	OwnerID   string
	MemberIDs []string // besides the owner
	CreatedAt time.Time
	// MaxMembers bounds the member count, owner included.
	MaxMembers int
	// Notice is the system message that opens the group's history (seq 1);
	// its ConversationID is ignored.
	Notice NewMessage
}

// Store is Parley's system of record. Implementations are safe for
// concurrent use. Every method honours ctx cancellation and returns ctx's
// error when it ends the call.
type Store interface {
	UserStore
	DeviceStore
	ConversationStore
	MessageStore
	CursorStore
	MediaStore
	SearchStore

	// Epoch identifies this store's history. It is generated when the
	// store is first created and never changes afterwards, so a client that
	// sees a different epoch knows the store was reset or replaced.
	Epoch(ctx context.Context) (string, error)

	// Close releases the store. It is idempotent. Calls to other methods
	// after Close return ErrUnavailable.
	Close() error
}

// UserStore holds accounts.
type UserStore interface {
	// CreateUser inserts u. ErrConflict when the username is taken.
	CreateUser(ctx context.Context, u User) error
	// GetUser returns a user by id, or ErrNotFound.
	GetUser(ctx context.Context, id string) (User, error)
	// GetUserByUsername returns a user by username, or ErrNotFound.
	GetUserByUsername(ctx context.Context, username string) (User, error)
	// GetUsers returns the users that exist among ids, in no particular
	// order; unknown ids are skipped.
	GetUsers(ctx context.Context, ids []string) ([]User, error)
}

// DeviceStore holds device sessions and their refresh tokens.
type DeviceStore interface {
	// CreateDevice inserts a device together with its first refresh token.
	CreateDevice(ctx context.Context, d Device, first RefreshToken) error
	// GetDevice returns a device (revoked or not), or ErrNotFound.
	GetDevice(ctx context.Context, id string) (Device, error)
	// RotateRefreshToken atomically spends the token with hash oldHash and
	// stores next for the same device. Outcomes, checked in this order:
	//   - ErrNotFound: no such token.
	//   - ErrRevoked: the device was revoked (its tokens are spent too, so
	//     this comes before the reuse check).
	//   - ErrTokenReused: the token was already spent (even if it has
	//     expired since); the device is revoked and its tokens spent in the
	//     same, committed transaction; next is not stored.
	//   - ErrNotFound: the token expired (ExpiresAt <= now).
	//   - nil: the token is spent, next is live; returns the device.
	// next.DeviceID is ignored (the device of oldHash is used).
	RotateRefreshToken(ctx context.Context, oldHash []byte, next RefreshToken, now time.Time) (Device, error)
	// RevokeDevice marks a device revoked (idempotent) and spends its
	// tokens. ErrNotFound for an unknown device.
	RevokeDevice(ctx context.Context, id string, now time.Time) error
	// ListDevices returns a user's live (unrevoked) devices.
	ListDevices(ctx context.Context, userID string) ([]Device, error)
}

// ConversationStore holds conversations and memberships. Membership changes
// append a system message in the same transaction, so they are ordered with
// the conversation's messages, and make its seq the conversation's
// membership version (Message.MembersSeq).
type ConversationStore interface {
	// GetOrCreateDirect returns the direct conversation of users a and b
	// (order does not matter), creating it with id when none exists.
	// created reports which. ErrNotFound when either user does not exist.
	GetOrCreateDirect(ctx context.Context, id, a, b string, now time.Time) (c Conversation, created bool, err error)
	// CreateGroup creates a group with its owner (RoleOwner) and members
	// (RoleMember; repeats and the owner among them are ignored), all
	// joined at seq 1, which is g.Notice. ErrNotFound when a member does
	// not exist; ErrGroupFull when there are too many (g.MaxMembers <= 0
	// means no limit).
	CreateGroup(ctx context.Context, g NewGroup) (Conversation, Message, error)
	// GetConversation returns a conversation, or ErrNotFound.
	GetConversation(ctx context.Context, id string) (Conversation, error)
	// GetMember returns a membership, or ErrNotMember (also when the
	// conversation does not exist).
	GetMember(ctx context.Context, conversationID, userID string) (Member, error)
	// ListMembers returns a conversation's members ordered by join (a
	// group's owner first), or ErrNotFound when the conversation does not
	// exist.
	ListMembers(ctx context.Context, conversationID string) ([]Member, error)
	// AddMembers adds users (RoleMember) to a group and appends notice; the
	// new members join at the notice's seq, with LastReadSeq one below it.
	// ErrNotGroup, ErrNotFound (the conversation or a user does not exist),
	// ErrConflict (all of them are members already; those that are already
	// members are otherwise skipped), ErrGroupFull (the result would exceed
	// maxMembers; <= 0 means no limit). notice.ConversationID is ignored,
	// here and in RemoveMember and RecallMessage.
	AddMembers(ctx context.Context, conversationID string, userIDs []string, maxMembers int, notice NewMessage) (Message, error)
	// RemoveMember deletes a membership and appends notice. ErrNotGroup,
	// ErrNotMember.
	RemoveMember(ctx context.Context, conversationID, userID string, notice NewMessage) (Message, error)
	// DirectPeers returns the users who share a direct conversation with
	// userID (the people who see each other's presence), in no particular
	// order; empty, not an error, for an unknown user. One indexed query
	// that reads memberships only, so it is cheap enough for every connect.
	DirectPeers(ctx context.Context, userID string) ([]string, error)
	// ListConversations returns a user's conversations, most recent
	// activity first.
	ListConversations(ctx context.Context, userID string) ([]ConversationSummary, error)
	// MarkRead raises the user's LastReadSeq to min(seq, LastSeq); it never
	// lowers it. Returns the resulting value and whether it changed.
	// ErrNotMember when the user is not a member.
	MarkRead(ctx context.Context, conversationID, userID string, seq uint64) (uint64, bool, error)
}

// MessageStore holds messages.
type MessageStore interface {
	// AppendMessages commits a batch in one transaction. Each message gets
	// the next seq of its conversation, in slice order, with no gaps, even
	// when several callers (or processes) append concurrently. Results are
	// in the order of msgs. A message whose (ConversationID, SenderID,
	// ClientMsgID) was committed before is not written again: its result
	// carries the original and Duplicate. A duplicate inside one batch
	// yields the first. The sender's LastReadSeq advances to the seq of
	// its own message. An error return means nothing was committed.
	// A committed key is reported as a duplicate even when its sender is no
	// longer a member; a repeat inside the batch has Duplicate set too.
	// Every result's message carries MembersSeq (see Message).
	AppendMessages(ctx context.Context, msgs []NewMessage) ([]AppendResult, error)
	// GetMessage returns one message, or ErrNotFound.
	GetMessage(ctx context.Context, conversationID string, seq uint64) (Message, error)
	// RecallMessage erases the body of the message at seq, records when,
	// and appends notice, all in one transaction. Returns the recalled
	// message and the committed notice. ErrNotFound when there is no such
	// message; ErrConflict when it was already recalled or is a system
	// message.
	RecallMessage(ctx context.Context, conversationID string, seq uint64, notice NewMessage) (recalled Message, committed Message, err error)
	// History returns up to q.Limit messages in ascending seq order and
	// whether more lie beyond the page in q.Direction (never below
	// q.MinSeq). Only the store's own history counts: messages at or below
	// the conversation's ArchivedSeq (see HotWindow) are not returned,
	// and are not "more". An unknown conversation has an empty history.
	History(ctx context.Context, q HistoryQuery) ([]Message, bool, error)
}

// CursorStore holds per-device delivery cursors.
type CursorStore interface {
	// SaveCursors raises each cursor to its Seq (never lowers it), clamped
	// to the conversation's LastSeq so that a bogus ack cannot hide later
	// messages. Entries naming an unknown device or conversation are
	// skipped, so one bad entry does not fail a batch of acks.
	SaveCursors(ctx context.Context, cursors []Cursor) error
	// Backlogs returns, in one query, one entry for every conversation
	// userID is a member of, saying what deviceID already has there
	// (honouring join points) and the conversation's newest seq. Caught-up
	// conversations are included (After == LastSeq), and so are
	// conversations without messages (After and LastSeq 0); conversations
	// the user left are not. Entries are ordered most recent activity
	// first (Conversation.LastMessageAt descending). An unknown user, or
	// one without conversations, has none; an unknown deviceID has no
	// cursors.
	Backlogs(ctx context.Context, userID, deviceID string) ([]Backlog, error)
}

// SearchQuery selects the messages a user may find, as
// SearchStore.SearchMessages specifies.
type SearchQuery struct {
	// UserID is the searcher: only conversations they are a member of are
	// searched, each from their join point (Member.JoinedSeq) on.
	UserID string
	// Terms are the words to find, as textsearch.Terms returns them:
	// folded (lowercase, without diacritics), made of letters and digits
	// only, at least one. A message matches when its SearchText holds
	// every term as a word; the last term also matches as a word prefix
	// ("hel" finds "hello").
	Terms []string
	// ConversationID, when set, limits the search to that conversation.
	ConversationID string
	// From and To bound CreatedAt: From inclusive, To exclusive; zero
	// means unbounded.
	From, To time.Time
	// After, when set, is the position of the last hit of the previous
	// page: only hits strictly after it (older) are returned.
	After *SearchCursor
	// Limit is at least 1; the store returns at most Limit hits.
	Limit int
}

// SearchCursor is a hit's position in the search order: CreatedAt
// descending; hits of the same millisecond in an order the backend
// chooses, the same on every call (PostgreSQL: ConversationID, then Seq,
// descending; SQLite: the later committed first).
type SearchCursor struct {
	CreatedAt      time.Time
	ConversationID string
	Seq            uint64
}

// SearchHit is one message a search found.
type SearchHit struct {
	// Message is the message as GetMessage returns it (MembersSeq 0).
	Message Message
	// Text is the message's NewMessage.SearchText, for snippets.
	Text string
}

// Cursor returns h's position, for SearchQuery.After.
func (h SearchHit) Cursor() SearchCursor {
	return SearchCursor{CreatedAt: h.Message.CreatedAt, ConversationID: h.Message.ConversationID, Seq: h.Message.Seq}
}

// SearchStore finds messages by their words.
type SearchStore interface {
	// SearchMessages returns up to q.Limit messages matching q.Terms in
	// the search order (see SearchCursor), and whether more lie beyond
	// the page. Only messages with a SearchText are found; a recalled
	// message never is (RecallMessage removes its text from the index in
	// its transaction), nor one below the searcher's join point, nor one
	// in a conversation they are not a member of (now: a member who left
	// finds nothing there). A q.ConversationID the user is not a member of
	// yields no hits, not an error. Messages committed before the backend
	// had a search index (its migration) have no SearchText and are not
	// found.
	SearchMessages(ctx context.Context, q SearchQuery) ([]SearchHit, bool, error)
}
