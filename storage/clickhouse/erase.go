package clickhouse

import (
	"context"
	"fmt"
	"strings"

	"github.com/parley-im/parley/storage"
)

// eraseRecalled removes from disk the earlier states of the messages at
// keys, which have just been archived as recalled. Readers (FINAL) stop
// seeing a recalled message's content at once, but ReplacingMergeTree
// keeps the replaced rows until a merge happens to combine the parts that
// hold them, and nothing makes that happen in a partition that stopped
// receiving inserts: the content would stay on disk indefinitely. A
// mutation (ALTER TABLE ... DELETE, in ClickHouse since 2018) rewrites the
// parts holding those rows; the server runs it in the background, usually
// within seconds (system.mutations shows its progress).
//
// One mutation per archive batch with recalls: mutations are heavy, so
// they are kept few, and each is limited to the recalled keys.
func (db *DB) eraseRecalled(ctx context.Context, keys []storage.MessageKey) error {
	if len(keys) == 0 {
		return nil
	}
	var b strings.Builder
	b.WriteString("ALTER TABLE messages DELETE WHERE recalled = 0 AND (conversation_id, seq) IN (")
	args := make([]any, 0, 2*len(keys))
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?)")
		args = append(args, k.ConversationID, k.Seq)
	}
	b.WriteString(")")
	cctx, cancel := db.call(ctx)
	defer cancel()
	if err := db.conn.Exec(cctx, b.String(), args...); err != nil {
		return wrapErr(ctx, fmt.Sprintf("erase %d recalled messages", len(keys)), err)
	}
	return nil
}
