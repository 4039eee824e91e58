package e2e_test

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/testserver"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// TestArchiveSurvivesArchiverCrashAndClickHouseRestart runs two parleyd
// processes on one PostgreSQL, both with the archive enabled, while a
// client sends through the second. The process holding the archiver lease
// is SIGKILLed mid-stream; the other takes the lease over; ClickHouse is
// halted and restarted under it, and a message is recalled during the
// outage; the killed process comes back. When the traffic ends, the
// archive holds every message of the conversation exactly once, in its
// current state (the recalled one without content).
func TestArchiveSurvivesArchiverCrashAndClickHouseRestart(t *testing.T) {
	t.Parallel()
	pg := realsvc.StartPostgresTB(t)
	dsn := pg.NewDatabase(t)
	chs := realsvc.StartClickHouseTB(t)
	database := chs.NewDatabase(t)
	signingKey := filepath.Join(t.TempDir(), "signing.key")
	start := func(node string) *testserver.Server {
		return testserver.Start(t,
			testserver.WithArgs("-store", dsn, "-node", node),
			testserver.WithEnv(
				"PARLEY_AUTH_SIGNING_KEY_FILE="+signingKey,
				"PARLEY_AUTH_ARGON2_MEMORY_KIB=1024",
				"PARLEY_CHAT_SEND_RATE=0",
				"PARLEY_ARCHIVE_ENABLED=true",
				"PARLEY_ARCHIVE_CLICKHOUSE_ADDRS="+chs.Addr(),
				"PARLEY_ARCHIVE_CLICKHOUSE_DATABASE="+database,
				"PARLEY_ARCHIVE_CLICKHOUSE_DIAL_TIMEOUT=1s",
				"PARLEY_ARCHIVE_CLICKHOUSE_CALL_TIMEOUT=5s",
				"PARLEY_ARCHIVE_INTERVAL=10ms",
				"PARLEY_ARCHIVE_BATCH_SIZE=20",
				"PARLEY_ARCHIVE_LEASE_TTL=1s",
			))
	}
	first := start("first")
	waitMetric(t, first.AdminURL(), "parley_archive_leader", 1)
	second := start("second")

	alice := newUser(t, second.URL(), "alice", 1)
	bob := newUser(t, second.URL(), "bob", 1)
	dm := createDirect(t, alice, bob)
	const total = 400
	sent := make(chan error, 1)
	go func() {
		for i := range total {
			_, err := alice.client().Chat().SendMessage(context.Background(), &parleyv1.SendMessageRequest{
				ConversationId: dm, ClientMsgId: fmt.Sprintf("m-%d", i), Content: text(fmt.Sprintf("message %d", i)),
			})
			if err != nil {
				sent <- fmt.Errorf("send %d: %w", i, err)
				return
			}
		}
		sent <- nil
	}()

	// The archiver dies between batches or in one, whichever comes.
	waitMetric(t, first.AdminURL(), "parley_archive_messages_total", 40)
	first.Kill()
	waitMetric(t, second.AdminURL(), "parley_archive_leader", 1)
	waitMetric(t, second.AdminURL(), "parley_archive_messages_total", 40)

	require.NoError(t, chs.Halt())
	waitMetric(t, second.AdminURL(), "parley_archive_batch_failures_total", 1)
	_, err := alice.client().Chat().RecallMessage(t.Context(), &parleyv1.RecallMessageRequest{ConversationId: dm, Seq: 3})
	require.NoError(t, err, "recalls do not need the archive")
	require.NoError(t, chs.Restart())
	first.Restart(t)

	select {
	case err := <-sent:
		require.NoError(t, err)
	case <-time.After(2 * time.Minute):
		t.Fatal("the sender did not finish in 2 minutes")
	}
	want := history(t, bob.client(), dm)
	require.Len(t, want, total+1, "the messages and the recall notice")

	db, err := clickhouse.Open(t.Context(), clickhouse.Config{Addrs: []string{chs.Addr()}, Database: database, CallTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	require.Eventually(t, func() bool {
		n, err := db.Count(context.Background())
		return err == nil && n == uint64(len(want))
	}, time.Minute, 20*time.Millisecond, "the archive catches up")
	// The lease holder may still be writing a batch it read before the
	// last ack; it can only repeat states the archive collapses.
	got, err := db.Messages(t.Context(), dm, 1, math.MaxInt64, 0)
	require.NoError(t, err)
	require.Len(t, got, len(want), "each message once")
	for i, m := range want {
		a := got[i]
		require.Equal(t, m.GetSeq(), a.Seq)
		require.Equal(t, m.GetId(), a.ID)
		if m.GetSeq() == 3 {
			require.False(t, a.RecalledAt.IsZero(), "the recall during the outage reached the archive")
			require.Empty(t, a.Body)
			require.Empty(t, a.SearchText)
			continue
		}
		require.True(t, a.RecalledAt.IsZero(), "seq %d", a.Seq)
		if m.GetContent().GetText() != "" {
			require.Equal(t, m.GetContent().GetText(), a.SearchText, "seq %d", a.Seq)
		}
	}
	require.NoError(t, second.Stop())
	require.NoError(t, first.Stop())
}

// waitMetric waits until a server's series reaches at least atLeast.
func waitMetric(t *testing.T, adminURL, series string, atLeast float64) {
	t.Helper()
	require.Eventually(t, func() bool {
		v, err := metric(context.Background(), adminURL, series)
		return err == nil && v >= atLeast
	}, time.Minute, 10*time.Millisecond, "%s at %s: want at least %v", series, adminURL, atLeast)
}
