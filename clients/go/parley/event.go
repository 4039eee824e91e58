package parley

import (
	"fmt"
	"time"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// Event is what a [Session] delivers to the application: one of
// [*ConnectedEvent], [*SyncedEvent], [*MessageEvent], [*GapEvent],
// [*ReceiptEvent], [*TypingEvent], [*PresenceEvent], [*ErrorEvent],
// [*EpochChangedEvent] or [*DisconnectedEvent]. Events arrive in the order the
// Session observed them; messages of one conversation arrive in seq order,
// each at most once per epoch.
type Event interface {
	isEvent()
}

// ConnectedEvent reports an open stream: the server's Welcome. Catch-up
// (messages after the device's cursors, and gaps) follows, then a
// [SyncedEvent]. Reconnect is false for the Session's first connection.
type ConnectedEvent struct {
	Welcome   *parleyv1.Welcome
	Reconnect bool
}

// SyncedEvent marks the end of catch-up on the current stream; live traffic
// follows.
type SyncedEvent struct{}

// MessageEvent carries a message, including system messages (membership
// changes, recall notices), and possibly a message this device sent (check
// Message.SenderDeviceId). Receiving it is what the Session acknowledges to the
// server.
type MessageEvent struct {
	Message *parleyv1.Message
}

// GapEvent says catch-up skipped the messages of a conversation after FromSeq
// up to and including ToSeq; page them with [Client.History] if the
// application wants them.
type GapEvent struct {
	ConversationID string
	FromSeq        uint64
	ToSeq          uint64
}

// ReceiptEvent says a member read a conversation up to LastReadSeq.
type ReceiptEvent struct {
	Receipt *parleyv1.Receipt
}

// TypingEvent says a member started or stopped typing.
type TypingEvent struct {
	Typing *parleyv1.Typing
}

// PresenceEvent says whether a user has any device online.
type PresenceEvent struct {
	Presence *parleyv1.Presence
}

// ErrorEvent is an error frame from the server that answers no pending send
// (errors answering a send are returned by [Session.Send]).
type ErrorEvent struct {
	Error *parleyv1.Error
}

// EpochChangedEvent says the server's store was reset or restored: its history
// is not the one the application saw. The Session has forgotten its
// de-duplication state and discarded undelivered messages of the old epoch;
// the application should drop its local copy of conversations too.
type EpochChangedEvent struct {
	Old string
	New string
}

// DisconnectedEvent reports a lost stream. Unless Final, the Session
// reconnects after RetryIn. A Final event is the last one: the Session ended
// (see [Session.Err]) and the events channel closes after it.
type DisconnectedEvent struct {
	Err     error
	RetryIn time.Duration
	Final   bool
}

// ResyncError is the error of a stream the server dropped with a Resync frame
// (the device fell behind, a newer stream of the same device replaced it, or
// the server is shutting down).
type ResyncError struct {
	Reason string
}

func (e *ResyncError) Error() string {
	return fmt.Sprintf("parley: server asked to resync: %s", e.Reason)
}

func (*ConnectedEvent) isEvent()    {}
func (*SyncedEvent) isEvent()       {}
func (*MessageEvent) isEvent()      {}
func (*GapEvent) isEvent()          {}
func (*ReceiptEvent) isEvent()      {}
func (*TypingEvent) isEvent()       {}
func (*PresenceEvent) isEvent()     {}
func (*ErrorEvent) isEvent()        {}
func (*EpochChangedEvent) isEvent() {}
func (*DisconnectedEvent) isEvent() {}
