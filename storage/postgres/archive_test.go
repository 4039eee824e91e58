package postgres_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/storagetest"
)

func TestArchiveConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunArchive(t, func(t *testing.T) storagetest.ArchiveStore {
		return open(t, pg.NewSchema(t))
	})
}

// TestOutboxLateCommit is the case "ids above my checkpoint" gets wrong:
// transaction A takes the lower outbox id, B takes a higher one and
// commits first. A reader that sees (and acks) B before A commits must
// still see A afterwards.
func TestOutboxLateCommit(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	s := open(t, dsn)
	require.NoError(t, s.EnableArchive(ctx))
	a, b := user(t, s, "a"), user(t, s, "b")
	c, _, err := s.GetOrCreateDirect(ctx, "c-early", a.ID, b.ID, time.Now())
	require.NoError(t, err)

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(t.Context()) })
	// A: a message written like an append, in its own conversation, left
	// uncommitted. Its trigger takes an outbox id now.
	txA, err := conn.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = txA.Rollback(t.Context()) })
	_, err = txA.Exec(ctx, `INSERT INTO messages (conversation_id, seq, id, sender_id, kind, body, created_at)
		VALUES ('c-late', 1, 'm-late', $1, 1, 'late', now())`, a.ID)
	require.NoError(t, err)
	var idA int64
	require.NoError(t, txA.QueryRow(ctx, `SELECT id FROM archive_outbox WHERE conversation_id = 'c-late'`).Scan(&idA))

	// B: an append through the store, committed while A is open.
	mB := appendOne(t, s, storage.NewMessage{ID: "m-early", ConversationID: c.ID, SenderID: a.ID,
		ClientMsgID: "k", Kind: storage.MessageText, Body: []byte("early"), CreatedAt: time.Now()})

	es, err := s.ReadOutbox(ctx, 100)
	require.NoError(t, err)
	require.Len(t, es, 1, "A has not committed")
	require.Equal(t, storage.MessageKey{ConversationID: c.ID, Seq: mB.Seq}, es[0].Key)
	require.Greater(t, es[0].ID, idA, "B took the higher id")
	require.NoError(t, s.AckOutbox(ctx, []int64{es[0].ID}))

	require.NoError(t, txA.Commit(ctx))
	es, err = s.ReadOutbox(ctx, 100)
	require.NoError(t, err)
	require.Len(t, es, 1, "A's entry, below the acked one, is not skipped")
	require.Equal(t, idA, es[0].ID)
	require.Equal(t, storage.MessageKey{ConversationID: "c-late", Seq: 1}, es[0].Key)
	msgs, err := s.LoadMessages(ctx, []storage.MessageKey{es[0].Key})
	require.NoError(t, err)
	require.Len(t, msgs, 1)
	require.Equal(t, "m-late", msgs[0].Message.ID)
}
