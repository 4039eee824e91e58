package main

import (
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// pg is one throwaway PostgreSQL for the tests of this binary that need
// it, started by the first of them and stopped by TestMain.
var pg struct {
	once sync.Once
	srv  *realsvc.Postgres
	err  error
}

// postgresDSN returns a DSN for a fresh schema on the shared PostgreSQL.
func postgresDSN(tb testing.TB) string {
	tb.Helper()
	pg.once.Do(func() { pg.srv, pg.err = realsvc.StartPostgres() })
	require.NoError(tb, pg.err, "start PostgreSQL")
	return pg.srv.NewSchema(tb)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if pg.srv != nil {
		if err := pg.srv.Stop(); err != nil && code == 0 {
			code = 1
		}
	}
	if rd.srv != nil {
		if err := rd.srv.Stop(); err != nil && code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

// parleyd on PostgreSQL: messaging works, and an acknowledged message and
// its idempotency key survive a restart of the server.
func TestPostgresStore(t *testing.T) {
	t.Parallel()
	dsn := postgresDSN(t)

	var out strings.Builder
	require.NoError(t, migrate(t.Context(), []string{"-store", dsn}, func(string) string { return "" }, &out, &out))
	require.Contains(t, out.String(), "schema is current")

	ts := startServer(t, "-store", dsn)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()

	bs, err := bob.chat.Connect(t.Context())
	require.NoError(t, err)
	require.NoError(t, bs.SendHeaders())
	recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })
	send := &parleyv1.SendMessageRequest{ConversationId: cid, ClientMsgId: "pg-1", Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: "stored in postgres"}}}
	first, err := alice.chat.SendMessage(t.Context(), send)
	require.NoError(t, err)
	got := recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetMessage() != nil })
	require.Equal(t, first.GetMessage().GetId(), got.GetMessage().GetId())
	require.NoError(t, bs.CloseSend())
	ts.stop(t)

	// A new process on the same database: the retry is recognised.
	ts = startServer(t, "-store", dsn)
	again := login(t, hc, ts.url, "alice")
	res, err := again.chat.SendMessage(t.Context(), send)
	require.NoError(t, err)
	require.True(t, res.GetDuplicate())
	require.Equal(t, first.GetMessage().GetId(), res.GetMessage().GetId())
	hist, err := again.chat.GetHistory(t.Context(), &parleyv1.GetHistoryRequest{ConversationId: cid, Direction: parleyv1.HistoryDirection_HISTORY_DIRECTION_BEFORE})
	require.NoError(t, err)
	require.Len(t, hist.GetMessages(), 1)
	require.Equal(t, "stored in postgres", hist.GetMessages()[0].GetContent().GetText())
}
