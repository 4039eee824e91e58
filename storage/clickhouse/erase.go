package clickhouse

import (
	"context"
)

// EraseRecalled removes from disk the earlier states of every recalled
// message. Readers (FINAL, or the latest state by key) stop seeing a
// recalled message's content at once, but ReplacingMergeTree keeps the
// replaced rows until a merge happens to combine the parts that hold
// them, and nothing makes that happen in a partition that stopped
// receiving inserts. A mutation (ALTER TABLE ... DELETE) rewrites the
// parts; the server runs it in the background (system.mutations shows
// its progress).
//
// A mutation rewrites the table's parts: on 18.16, half a second for
// 1,000,000 messages (BenchmarkArchive1MRecallErase). So it is one
// mutation for all recalls, run periodically by the archiver, not one per
// recall.
func (db *DB) EraseRecalled(ctx context.Context) error {
	if db.closed.Load() {
		return errClosed("erase recalled")
	}
	return db.exec(ctx, "erase recalled", `ALTER TABLE messages DELETE WHERE recalled = 0
		AND (conversation_id, seq) IN (SELECT conversation_id, seq FROM messages WHERE recalled = 1)`)
}
