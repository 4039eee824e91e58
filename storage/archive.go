package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The archive's refusals, the same from every backend.
var (
	// ErrArchiveNotEnabled: TrimArchived before EnableArchive; nothing
	// proves the archive holds any message.
	ErrArchiveNotEnabled = errors.New("the archive outbox was never enabled, so nothing proves the archive holds these messages")
	// ErrHistoryArchived: DisableArchive once the window has moved
	// history into the archive. It wraps ErrConflict.
	ErrHistoryArchived = fmt.Errorf("%w: some history is held only by the archive (hot_window trimmed it); the archive cannot be switched off", ErrConflict)
)

// MessageKey names one message: its conversation and seq.
type MessageKey struct {
	ConversationID string
	Seq            uint64
}

// OutboxEntry is one committed change the archive has not yet taken: the
// message at Key was appended, recalled or otherwise changed.
type OutboxEntry struct {
	// ID orders entries by when their transaction wrote them (not by when
	// it committed); it identifies the entry for AckOutbox.
	ID  int64
	Key MessageKey
	// EnqueuedAt is when the entry was written (the store's clock).
	EnqueuedAt time.Time
}

// ArchiveOutbox is the hand-off from the primary store to the message
// archive. Once enabled (EnableArchive), every transaction that commits a
// change the archive must see (a message appended, by AppendMessages or
// as a notice of CreateGroup, AddMembers, RemoveMember or RecallMessage;
// a message recalled) also writes an OutboxEntry, in the same
// transaction; the messages committed before are enqueued afterwards, a
// page at a time (BackfillOutbox). An entry leaves the outbox only
// through AckOutbox.
//
// That makes the outbox itself the archiver's checkpoint: a transaction
// that commits late (after a reader went past its ID) is not skipped, its
// entry is simply still there at the next read. An archiver loops: read
// the oldest entries, load their messages' current state, write them to
// the archive, and only then ack exactly the entries it read. A crash
// anywhere in between repeats the last batch, which the archive collapses.
//
// Implementations are safe for concurrent use; several archivers may run
// at once without losing anything (each entry is archived at least once),
// but a lease (LeaseStore) keeps them from doing the work twice.
type ArchiveOutbox interface {
	// EnableArchive turns the outbox on, idempotently. The first call
	// waits for the transactions writing messages to commit, switches
	// the outbox on and starts a backfill of every message committed
	// before (BackfillOutbox), so that no message falls between the two.
	// It enqueues nothing itself, so it is quick on any store. Until it is
	// called, nothing is enqueued (a store without an archive keeps no
	// outbox).
	EnableArchive(ctx context.Context) error
	// BackfillOutbox enqueues up to limit (at least 1) of the messages
	// the backfill has not reached yet, in (conversation, seq) order, and
	// moves its cursor past them, in one transaction. It reports how many
	// it enqueued and whether the backfill is done (then nothing is left,
	// and every later call does nothing). Messages committed after
	// EnableArchive may be enqueued a second time, which the archive
	// collapses. Before EnableArchive it does nothing and reports done
	// false.
	BackfillOutbox(ctx context.Context, limit int) (enqueued int, done bool, err error)
	// DisableArchive turns the outbox off and empties it, idempotently,
	// for a deployment that stops archiving (nothing would drain the
	// outbox otherwise). It refuses with ErrHistoryArchived (an
	// ErrConflict), changing nothing,
	// once any conversation's history has moved to the archive (HotWindow):
	// the store alone no longer holds it. A later EnableArchive starts
	// over, backfill included.
	DisableArchive(ctx context.Context) error
	// ReadOutbox returns the oldest entries (lowest ID first), at most
	// limit (at least 1). Reading removes nothing. An entry appears
	// only once its transaction has committed.
	ReadOutbox(ctx context.Context, limit int) ([]OutboxEntry, error)
	// LoadMessages returns the current state of the messages named by
	// keys (repeats allowed), each once, in no particular order; keys
	// naming no message are skipped.
	LoadMessages(ctx context.Context, keys []MessageKey) ([]ArchiveRecord, error)
	// AckOutbox deletes the entries with these IDs; unknown IDs (acked
	// already) are ignored.
	AckOutbox(ctx context.Context, ids []int64) error
	// OutboxLag returns how many entries wait and when the oldest was
	// enqueued (zero when none wait).
	OutboxLag(ctx context.Context) (n int, oldest time.Time, err error)
}

// ArchiveRecord is a message as the archive takes it: its current state
// and its searchable text (NewMessage.SearchText; empty once recalled, and
// for messages that had none or were committed before the store indexed
// text).
type ArchiveRecord struct {
	Message    Message
	SearchText string
}

// ArchivedRange is the part of one conversation's history that a member
// may read and that only the archive holds: seq FromSeq (the member's join
// point, at least 1) to ToSeq (the conversation's ArchivedSeq), both
// included.
type ArchivedRange struct {
	ConversationID string
	FromSeq, ToSeq uint64
}

// HotWindow keeps the primary store's history to a recent window once the
// archive has the rest. Per conversation the store's history is then seq
// ArchivedSeq+1 up to the newest; everything at or below ArchivedSeq is
// read from the archive (server/history joins the two).
//
// Implementations are safe for concurrent use with every other method of
// the store.
type HotWindow interface {
	// TrimArchived moves the boundary of up to limit (at least 1)
	// messages, over as many conversations as it takes, and returns how
	// many it moved; fewer than limit means nothing else is due now. In
	// each conversation it raises ArchivedSeq over the run of messages
	// above it that were all created before cutoff and that the archive
	// holds in their current state (no ArchiveOutbox entry waits for any
	// of them), stopping short of the conversation's newest message (the
	// conversation list shows it). The messages it passes leave History
	// and SearchMessages and are deleted, except that a message carrying
	// media that is not recalled keeps its row: it is what lets members
	// read that media (MediaStore.CanReadMedia) and keeps the upload from
	// being swept. Fails, changing nothing, when the archive was never
	// enabled (EnableArchive), with ErrArchiveNotEnabled: nothing would
	// prove the archive has them. Moves nothing (0, nil) until the backfill is done: a message it has
	// not reached has no outbox entry yet.
	TrimArchived(ctx context.Context, cutoff time.Time, limit int) (int, error)
	// ArchivedSeq returns conversationID's boundary: the highest seq
	// whose message only the archive holds (0 for none, and for an
	// unknown conversation).
	ArchivedSeq(ctx context.Context, conversationID string) (uint64, error)
	// ArchivedRanges returns, for every conversation userID is a member
	// of (only conversationID when it is not empty) whose boundary is at
	// or above the member's join point, the range of its archived history
	// the member may read. Conversations with nothing archived for the
	// member are left out.
	ArchivedRanges(ctx context.Context, userID, conversationID string) ([]ArchivedRange, error)
}

// LeaseStore grants named, expiring leases, so that a job that must run
// once per cluster (the archiver) runs in one process at a time. The
// store's clock decides expiry. Safe for concurrent use.
type LeaseStore interface {
	// AcquireLease takes the lease name for holder, or renews it when
	// holder has it already, until ttl from now. It returns false (and no
	// error) when another holder's lease has not expired. A holder must
	// stop relying on the lease when a renewal returns false or an error.
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error)
	// ReleaseLease gives the lease up if holder has it (a no-op
	// otherwise), so another holder may take it at once.
	ReleaseLease(ctx context.Context, name, holder string) error
}

// MessageArchive is the long-term archive of messages (ClickHouse). It is
// never the source of truth: it is written from the primary store, and
// every write may be repeated.
type MessageArchive interface {
	// ArchiveMessages writes the current state of msgs, with their text
	// for search. Writing a message again, or an older state after a
	// newer one, leaves the newest state (the latest of its creation,
	// edit and recall) for readers; a recalled message's content and text
	// are not kept. Errors wrap ErrUnavailable when the archive cannot be
	// reached.
	ArchiveMessages(ctx context.Context, msgs []ArchiveRecord) error
}
