package main

import (
	"context"

	"github.com/parley-im/parley/server/archive"
	"github.com/parley-im/parley/server/history"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
)

// The archive's ClickHouse serves the archiver (writes) and the history
// reader (pages and search below the store's window).
var (
	_ storage.MessageArchive = (*lazyClickHouse)(nil)
	_ history.Archive        = (*lazyClickHouse)(nil)
	_ archive.RecallEraser   = (*lazyClickHouse)(nil)
)

func (l *lazyClickHouse) ArchiveMessages(ctx context.Context, msgs []storage.ArchiveRecord) error {
	return l.do(func(db *clickhouse.DB) error { return db.ArchiveMessages(ctx, msgs) })
}

func (l *lazyClickHouse) EraseRecalled(ctx context.Context) error {
	return l.do(func(db *clickhouse.DB) error { return db.EraseRecalled(ctx) })
}

func (l *lazyClickHouse) History(ctx context.Context, q storage.HistoryQuery, maxSeq uint64) ([]storage.Message, bool, error) {
	db, err := l.get()
	if err != nil {
		return nil, false, err
	}
	return db.History(ctx, q, maxSeq)
}

// Search runs q in the archived ranges: the caller's conversations, each
// from its join point up to the store's boundary.
func (l *lazyClickHouse) Search(ctx context.Context, q storage.SearchQuery, ranges []storage.ArchivedRange) ([]storage.SearchHit, bool, error) {
	db, err := l.get()
	if err != nil {
		return nil, false, err
	}
	scopes := make([]clickhouse.SearchScope, len(ranges))
	for i, r := range ranges {
		scopes[i] = clickhouse.SearchScope{ConversationID: r.ConversationID, MinSeq: r.FromSeq, MaxSeq: r.ToSeq}
	}
	return db.SearchMessages(ctx, clickhouse.SearchQuery{
		Terms: q.Terms, Scopes: scopes, From: q.From, To: q.To, After: q.After, Limit: q.Limit,
	})
}

// historyStore is the store with History read across the store's window
// and the archive, for the engine's catch-up and the handlers alike.
type historyStore struct {
	storage.Store
	reader *history.Reader
}

func (s historyStore) History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error) {
	return s.reader.History(ctx, q)
}

// hotSide is the store's part of history: reads through the instrumented
// store, the window's boundary from the store itself.
type hotSide struct {
	storage.Store
	storage.HotWindow
}
