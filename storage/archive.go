package storage

import (
	"context"
	"time"
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
// transaction. An entry leaves the outbox only through AckOutbox.
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
	// enqueues every message committed so far, atomically with switching
	// the outbox on, so no message falls between the two: the archive
	// starts complete. Until it is called, nothing is enqueued (a store
	// without an archive keeps no outbox).
	EnableArchive(ctx context.Context) error
	// ReadOutbox returns the oldest entries (lowest ID first), at most
	// limit (at least 1). Reading removes nothing. An entry appears
	// only once its transaction has committed.
	ReadOutbox(ctx context.Context, limit int) ([]OutboxEntry, error)
	// LoadMessages returns the current state of the messages named by
	// keys (repeats allowed), each once, in no particular order; keys
	// naming no message are skipped.
	LoadMessages(ctx context.Context, keys []MessageKey) ([]Message, error)
	// AckOutbox deletes the entries with these IDs; unknown IDs (acked
	// already) are ignored.
	AckOutbox(ctx context.Context, ids []int64) error
	// OutboxLag returns how many entries wait and when the oldest was
	// enqueued (zero when none wait).
	OutboxLag(ctx context.Context) (n int, oldest time.Time, err error)
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
	// ArchiveMessages writes the current state of msgs. Writing a message
	// again, or an older state after a newer one, leaves the newest state
	// (the latest of its creation, edit and recall) for readers; a
	// recalled message's content is not kept. Errors wrap ErrUnavailable
	// when the archive cannot be reached.
	ArchiveMessages(ctx context.Context, msgs []Message) error
}
