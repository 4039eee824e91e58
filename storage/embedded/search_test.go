package embedded_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// TestMigrateSearch upgrades a file written before migration 0004: its
// messages are not found (they have no text in the index), their recall
// still works, and messages appended after the upgrade are found.
func TestMigrateSearch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "parley.db")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	msg := func(id, text string) storage.NewMessage {
		return storage.NewMessage{ID: id, ConversationID: "d", SenderID: "a", ClientMsgID: id,
			Kind: storage.MessageText, Body: []byte(text), SearchText: text, CreatedAt: now}
	}
	search := func(s storage.Store, word string) []storage.SearchHit {
		hits, _, err := s.SearchMessages(ctx, storage.SearchQuery{UserID: "b", Terms: []string{word}, Limit: 10})
		require.NoError(t, err)
		return hits
	}

	s := open(t, path)
	a, b := user(t, s, "a"), user(t, s, "b")
	_, _, err := s.GetOrCreateDirect(ctx, "d", a.ID, b.ID, now)
	require.NoError(t, err)
	old := appendOK(t, s, msg("m1", "hello before"))
	require.NoError(t, s.Close())

	db := rawDB(t, path)
	for _, q := range []string{
		// 0007 and 0008 add columns, which SQLite cannot do IF NOT
		// EXISTS: undone so that they run again.
		`DROP INDEX archive_outbox_message`,
		`ALTER TABLE conversations DROP COLUMN archived_seq`,
		`ALTER TABLE archive_state DROP COLUMN backfill_done`,
		`ALTER TABLE archive_state DROP COLUMN backfill_conversation`,
		`ALTER TABLE archive_state DROP COLUMN backfill_seq`,
		`DROP TABLE message_search`,
		`ALTER TABLE messages DROP COLUMN search_rowid`,
		`DELETE FROM schema_migrations WHERE version >= 4`,
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())

	s = open(t, path)
	require.Empty(t, search(s, "hello"), "written before the index")
	_, _, err = s.RecallMessage(ctx, "d", old.Seq, storage.NewMessage{ID: "n1", SenderID: "a", Kind: storage.MessageSystem, CreatedAt: now})
	require.NoError(t, err)
	m2 := appendOK(t, s, msg("m2", "hello after"))
	hits := search(s, "hello")
	require.Len(t, hits, 1)
	require.Equal(t, m2.ID, hits[0].Message.ID)
}

// TestRecallLeavesNoWords checks the index itself, not only the search
// results: a recalled message's words are gone from the FTS5 vocabulary
// (secure-delete), and its text from the table.
func TestRecallLeavesNoWords(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "parley.db")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, path)
	a, b := user(t, s, "a"), user(t, s, "b")
	_, _, err := s.GetOrCreateDirect(ctx, "d", a.ID, b.ID, now)
	require.NoError(t, err)
	keep := appendOK(t, s, storage.NewMessage{ID: "m1", ConversationID: "d", SenderID: "a", ClientMsgID: "m1",
		Kind: storage.MessageText, Body: []byte("x"), SearchText: "public words", CreatedAt: now})
	gone := appendOK(t, s, storage.NewMessage{ID: "m2", ConversationID: "d", SenderID: "a", ClientMsgID: "m2",
		Kind: storage.MessageText, Body: []byte("x"), SearchText: "zanzibar passphrase", CreatedAt: now})
	_, _, err = s.RecallMessage(ctx, "d", gone.Seq, storage.NewMessage{ID: "n1", SenderID: "a", Kind: storage.MessageSystem, CreatedAt: now})
	require.NoError(t, err)
	require.NoError(t, s.Close())

	db := rawDB(t, path)
	_, err = db.ExecContext(ctx, `CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, message_search, 'row')`)
	require.NoError(t, err)
	rows, err := db.QueryContext(ctx, `SELECT term FROM temp.vocab ORDER BY term`)
	require.NoError(t, err)
	var terms []string
	for rows.Next() {
		var term string
		require.NoError(t, rows.Scan(&term))
		terms = append(terms, term)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, rows.Close())
	require.Equal(t, []string{"public", "words"}, terms)
	var n int
	require.NoError(t, db.QueryRowContext(ctx, `SELECT count(*) FROM message_search WHERE text LIKE '%zanzibar%'`).Scan(&n))
	require.Zero(t, n)
	require.NotZero(t, keep.Seq)
}
