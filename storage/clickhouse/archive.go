package clickhouse

import (
	"context"

	"github.com/parley-im/parley/storage"
)

var _ storage.MessageArchive = (*DB)(nil)

// ArchiveMessages writes the current state of msgs from the primary store
// in one batch, as storage.MessageArchive specifies: a recalled message is
// written without its body or text, and its state outranks every other
// state of the message (ArchiveVersion), even one created in the same
// millisecond. The earlier states stay on disk until a merge or
// EraseRecalled removes them.
func (db *DB) ArchiveMessages(ctx context.Context, msgs []storage.ArchiveRecord) error {
	rows := make([]ArchivedMessage, len(msgs))
	for i, r := range msgs {
		rows[i] = NewArchivedMessage(r.Message)
		rows[i].SearchText = r.SearchText
		rows[i].Version = ArchiveVersion(rows[i])
	}
	return db.WriteMessages(ctx, rows)
}

// ArchiveVersion is the Version ArchiveMessages writes m with:
// StateVersion, plus one for a recalled state. The primary store keeps
// milliseconds, so a message recalled in the millisecond it was created
// would otherwise tie with its first state, and readers could see either:
// the recalled content must never be the one they see. A recall is final
// (nothing changes a recalled message), so nothing needs to outrank it.
func ArchiveVersion(m ArchivedMessage) uint64 {
	v := StateVersion(m)
	if !m.RecalledAt.IsZero() {
		v++
	}
	return v
}
