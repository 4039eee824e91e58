package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// parleyd with archive.enabled (from the environment, on the embedded
// store): the messages it commits reach ClickHouse, each once, and it
// shuts down cleanly with the archiver running.
func TestArchiveEnabled(t *testing.T) {
	t.Parallel()
	ch := realsvc.StartClickHouseTB(t)
	database := ch.NewDatabase(t)
	ts := startServerEnv(t, map[string]string{
		"PARLEY_ARCHIVE_ENABLED":                 "true",
		"PARLEY_ARCHIVE_INTERVAL":                "10ms",
		"PARLEY_ARCHIVE_CLICKHOUSE_ADDRS":        ch.Addr(),
		"PARLEY_ARCHIVE_CLICKHOUSE_DATABASE":     database,
		"PARLEY_ARCHIVE_CLICKHOUSE_CALL_TIMEOUT": "10s",
	})
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.id}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()
	const n = 5
	ids := make([]string, n)
	for i := range n {
		res, err := alice.chat.SendMessage(t.Context(), &parleyv1.SendMessageRequest{ConversationId: cid, ClientMsgId: fmt.Sprintf("a-%d", i),
			Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: fmt.Sprintf("archived %d", i)}}})
		require.NoError(t, err)
		ids[i] = res.GetMessage().GetId()
	}

	db, err := clickhouse.Open(t.Context(), clickhouse.Config{Addrs: []string{ch.Addr()}, Database: database})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.Eventually(t, func() bool {
		got, err := db.Messages(context.Background(), cid, 1, n, 0)
		return err == nil && len(got) == n
	}, 30*time.Second, 10*time.Millisecond)
	got, err := db.Messages(t.Context(), cid, 1, n, 0)
	require.NoError(t, err)
	for i, m := range got {
		require.Equal(t, ids[i], m.ID)
		require.NotEmpty(t, m.Body)
	}
	count, err := db.Count(t.Context())
	require.NoError(t, err)
	require.Equal(t, uint64(n), count)
	ts.stop(t)
}
