package archive_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/archive"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/postgres"
	"github.com/parley-im/parley/storage/storagetest"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// pg and ch are the servers the tests share (each test in its own schema
// and database), except the fault test, which halts a ClickHouse of its
// own.
var (
	pg *realsvc.Postgres
	ch *realsvc.ClickHouse
)

func TestMain(m *testing.M) {
	var err error
	if pg, err = realsvc.StartPostgres(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if ch, err = realsvc.StartClickHouse(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = pg.Stop()
		os.Exit(1)
	}
	code := m.Run()
	for _, stop := range []func() error{ch.Stop, pg.Stop} {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// backends are the primary stores the archiver runs on.
var backends = []struct {
	name string
	open func(t testing.TB) storagetest.ArchiveStore
}{
	{"embedded", func(t testing.TB) storagetest.ArchiveStore { return openEmbedded(t) }},
	{"postgres", func(t testing.TB) storagetest.ArchiveStore { return openPostgres(t, pg.NewSchema(t)) }},
}

func openEmbedded(t testing.TB) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func openPostgres(t testing.TB, dsn string) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn, MaxConns: 8})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// openArchive opens a fresh archive database on srv.
func openArchive(t testing.TB, srv *realsvc.ClickHouse) *clickhouse.DB {
	t.Helper()
	db, err := clickhouse.Open(context.Background(), clickhouse.Config{
		Addrs: []string{srv.Addr()}, Database: srv.NewDatabase(t),
		DialTimeout: 2 * time.Second, CallTimeout: 10 * time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// testConfig archives in small batches and polls often, so tests see
// several batches and quick takeovers.
func testConfig() archive.Config {
	return archive.Config{BatchSize: 50, Interval: 10 * time.Millisecond, LeaseTTL: 1500 * time.Millisecond}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// running is an archiver started by start.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs an archiver in a goroutine; stop (or the test's end) stops
// it and waits for it.
func start(t testing.TB, a *archive.Archiver) *running {
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the archiver and waits for Run to return nil. It is
// idempotent.
func (r *running) stop(t testing.TB) {
	r.cancel()
	if err, ok := <-r.done; ok {
		require.NoError(t, err)
		close(r.done)
	}
}

// world is a few users and conversations in a store.
type world struct {
	s     storagetest.ArchiveStore
	users []storage.User
	convs []string
	n     atomic.Int64
}

func newWorld(t testing.TB, s storagetest.ArchiveStore, nConvs int) *world {
	t.Helper()
	ctx := context.Background()
	w := &world{s: s}
	for i := range nConvs + 1 {
		u := storage.User{ID: fmt.Sprintf("u%d", i), Username: fmt.Sprintf("user%d", i), PasswordHash: "x", CreatedAt: time.Now()}
		require.NoError(t, s.CreateUser(ctx, u))
		w.users = append(w.users, u)
	}
	for i := 1; i <= nConvs; i++ {
		if i%2 == 0 {
			c, _, err := s.CreateGroup(ctx, storage.NewGroup{ID: fmt.Sprintf("g%d", i), Title: "g", OwnerID: w.users[0].ID,
				MemberIDs: []string{w.users[i].ID}, CreatedAt: time.Now(),
				Notice: storage.NewMessage{ID: fmt.Sprintf("n%d", i), SenderID: w.users[0].ID, Kind: storage.MessageSystem, CreatedAt: time.Now()}})
			require.NoError(t, err)
			w.convs = append(w.convs, c.ID)
			continue
		}
		c, _, err := s.GetOrCreateDirect(ctx, fmt.Sprintf("d%d", i), w.users[0].ID, w.users[i].ID, time.Now())
		require.NoError(t, err)
		w.convs = append(w.convs, c.ID)
	}
	return w
}

// send appends n messages (one batch) spread over the conversations.
func (w *world) send(ctx context.Context, n int) ([]storage.Message, error) {
	msgs := make([]storage.NewMessage, n)
	for i := range msgs {
		k := w.n.Add(1)
		msgs[i] = storage.NewMessage{
			ID: fmt.Sprintf("m%d", k), ConversationID: w.convs[int(k)%len(w.convs)], SenderID: w.users[0].ID,
			SenderDeviceID: "dev", ClientMsgID: fmt.Sprintf("c%d", k), Kind: storage.MessageText,
			Body: fmt.Appendf(nil, "message %d", k), CreatedAt: time.Now(),
		}
	}
	res, err := w.s.AppendMessages(ctx, msgs)
	if err != nil {
		return nil, err
	}
	out := make([]storage.Message, len(res))
	for i, r := range res {
		if r.Err != nil {
			return nil, r.Err
		}
		out[i] = r.Message
	}
	return out, nil
}

// storeMessages is every message of the world's conversations, from the
// store.
func (w *world) storeMessages(t testing.TB) map[string][]storage.Message {
	t.Helper()
	out := make(map[string][]storage.Message)
	for _, c := range w.convs {
		msgs, _, err := w.s.History(context.Background(), storage.HistoryQuery{ConversationID: c, Direction: storage.After, Limit: 10_000})
		require.NoError(t, err)
		out[c] = msgs
	}
	return out
}

// waitDrained waits until the backfill is done and the outbox is empty.
// (Asking whether the backfill is done may queue one more message of it,
// which the archiver then archives: harmless.)
func waitDrained(t testing.TB, s storage.ArchiveOutbox) {
	t.Helper()
	require.Eventually(t, func() bool {
		_, done, err := s.BackfillOutbox(context.Background(), 1)
		if err != nil || !done {
			return false
		}
		es, err := s.ReadOutbox(context.Background(), 1)
		return err == nil && len(es) == 0
	}, 120*time.Second, 10*time.Millisecond)
}

// requireArchived asserts that the archive holds exactly the world's
// messages, each once (Count with FINAL), each in its current state: the
// same (conversation_id, seq) set as the store, field by field, with a
// recalled message's body gone.
func requireArchived(t testing.TB, w *world, db *clickhouse.DB) {
	t.Helper()
	ctx := context.Background()
	total := 0
	for c, want := range w.storeMessages(t) {
		total += len(want)
		got, err := db.Messages(ctx, c, 1, math.MaxInt64, 0)
		require.NoError(t, err)
		require.Len(t, got, len(want), "conversation %s", c)
		for i, m := range want {
			a := got[i]
			exp := clickhouse.NewArchivedMessage(m)
			exp.Version = clickhouse.ArchiveVersion(exp)
			require.Equal(t, exp, a, "conversation %s seq %d", c, m.Seq)
			if !m.RecalledAt.IsZero() {
				require.Empty(t, a.Body, "a recalled message keeps no content")
			}
		}
	}
	n, err := db.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(total), n, "each message once")
}
