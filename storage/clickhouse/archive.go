package clickhouse

import (
	"context"

	"github.com/parley-im/parley/storage"
)

var _ storage.MessageArchive = (*DB)(nil)

// ArchiveMessages writes the current state of msgs from the primary store
// (NewArchivedMessage, version StateVersion) in one batch, as
// storage.MessageArchive specifies: a recalled message is written without
// its body, and its state outranks the one written at creation.
func (db *DB) ArchiveMessages(ctx context.Context, msgs []storage.Message) error {
	rows := make([]ArchivedMessage, len(msgs))
	for i, m := range msgs {
		rows[i] = NewArchivedMessage(m)
	}
	return db.WriteMessages(ctx, rows)
}
