package embedded_test

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/analytics/analyticstest"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/storagetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, filepath.Join(t.TempDir(), "parley.db"))
	})
}

func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "data", "parley.db") // the directory is created
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	s := open(t, path)
	epoch, err := s.Epoch(ctx)
	require.NoError(t, err)
	a, b := user(t, s, "a"), user(t, s, "b")
	dev := storage.Device{ID: "dev-a", UserID: a.ID, Name: "phone", CreatedAt: now}
	require.NoError(t, s.CreateDevice(ctx, dev, storage.RefreshToken{Hash: []byte("h1"), ExpiresAt: now.Add(time.Hour)}))
	c, _, err := s.GetOrCreateDirect(ctx, "c1", a.ID, b.ID, now)
	require.NoError(t, err)
	sent := appendOK(t, s, storage.NewMessage{
		ID: "m1", ConversationID: c.ID, SenderID: a.ID, SenderDeviceID: dev.ID,
		ClientMsgID: "cm1", Kind: storage.MessageText, Body: []byte("hello"), CreatedAt: now,
	})
	require.NoError(t, s.SaveCursors(ctx, []storage.Cursor{{DeviceID: dev.ID, ConversationID: c.ID, Seq: 1}}))
	require.NoError(t, s.Close())

	s = open(t, path)
	again, err := s.Epoch(ctx)
	require.NoError(t, err)
	require.Equal(t, epoch, again, "the epoch survives a reopen")

	got, err := s.GetUser(ctx, a.ID)
	require.NoError(t, err)
	require.Equal(t, a, got)
	m, err := s.GetMessage(ctx, c.ID, 1)
	require.NoError(t, err)
	require.Equal(t, sent, m)
	bl, err := s.Backlogs(ctx, a.ID, dev.ID)
	require.NoError(t, err)
	require.Equal(t, []storage.Backlog{{ConversationID: c.ID, After: 1, LastSeq: 1}}, bl, "the cursor survived")

	// Idempotency survives a restart, and seqs continue.
	res, err := s.AppendMessages(ctx, []storage.NewMessage{
		{ID: "m1-retry", ConversationID: c.ID, SenderID: a.ID, ClientMsgID: "cm1", Kind: storage.MessageText, Body: []byte("hello")},
		{ID: "m2", ConversationID: c.ID, SenderID: b.ID, ClientMsgID: "cm2", Kind: storage.MessageText, Body: []byte("hi")},
	})
	require.NoError(t, err)
	require.True(t, res[0].Duplicate)
	require.Equal(t, sent, res[0].Message)
	require.Equal(t, uint64(2), res[1].Message.Seq)

	_, err = s.RotateRefreshToken(ctx, []byte("h1"), storage.RefreshToken{Hash: []byte("h2"), ExpiresAt: now.Add(2 * time.Hour)}, now)
	require.NoError(t, err)
}

func TestMigrationsIdempotent(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "parley.db")
	var epochs []string
	for range 3 {
		s := open(t, path)
		e, err := s.Epoch(t.Context())
		require.NoError(t, err)
		epochs = append(epochs, e)
		require.NoError(t, s.Close())
	}
	require.Equal(t, []string{epochs[0], epochs[0], epochs[0]}, epochs)

	db := rawDB(t, path)
	var applied, distinct int
	require.NoError(t, db.QueryRowContext(t.Context(),
		`SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&applied, &distinct))
	require.Equal(t, distinct, applied, "each migration applied once")
	require.Positive(t, applied)
}

// TestMigrateMembersSeq upgrades a file written before migration 0002 (a
// current one with the column dropped and the version forgotten): an
// existing group reports MembersSeq 0 until its next membership change,
// which sets it as on any group.
func TestMigrateMembersSeq(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "parley.db")
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	msg := func(id, sender string) storage.NewMessage {
		return storage.NewMessage{ID: id, ConversationID: "g", SenderID: sender, ClientMsgID: id,
			Kind: storage.MessageText, Body: []byte("x"), CreatedAt: now}
	}
	notice := func(id string) storage.NewMessage {
		return storage.NewMessage{ID: id, SenderID: "a", Kind: storage.MessageSystem, CreatedAt: now}
	}

	s := open(t, path)
	a, b, c := user(t, s, "a"), user(t, s, "b"), user(t, s, "c")
	_, _, err := s.CreateGroup(ctx, storage.NewGroup{ID: "g", OwnerID: a.ID, MemberIDs: []string{b.ID},
		CreatedAt: now, Notice: notice("n1")})
	require.NoError(t, err)
	require.Equal(t, uint64(1), appendOK(t, s, msg("m1", b.ID)).MembersSeq)
	require.NoError(t, s.Close())

	db := rawDB(t, path)
	for _, q := range []string{
		// 0003 and 0004 undone too: every migration from 0002 on runs
		// again.
		// 0007 and 0008 add columns, which SQLite cannot do IF NOT
		// EXISTS: undone so that they run again.
		`DROP INDEX archive_outbox_message`,
		`ALTER TABLE conversations DROP COLUMN archived_seq`,
		`ALTER TABLE archive_state DROP COLUMN backfill_done`,
		`ALTER TABLE archive_state DROP COLUMN backfill_conversation`,
		`ALTER TABLE archive_state DROP COLUMN backfill_seq`,
		`DROP TABLE message_search`,
		`ALTER TABLE messages DROP COLUMN search_rowid`,
		`DROP INDEX messages_media_id`,
		`ALTER TABLE messages DROP COLUMN media_id`,
		`DROP TABLE media`,
		`DROP TABLE blobs`,
		`ALTER TABLE conversations DROP COLUMN members_seq`,
		`DELETE FROM schema_migrations WHERE version >= 2`,
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err)
	}
	require.NoError(t, db.Close())

	s = open(t, path)
	old, err := s.GetMessage(ctx, "g", 2)
	require.NoError(t, err)
	require.Equal(t, "m1", old.ID)
	require.Empty(t, old.MediaID, "a message written before 0003 carries no media")
	require.Zero(t, appendOK(t, s, msg("m2", b.ID)).MembersSeq, "unknown before the migration")
	added, err := s.AddMembers(ctx, "g", []string{c.ID}, 0, notice("n2"))
	require.NoError(t, err)
	require.Equal(t, added.Seq, added.MembersSeq)
	require.Equal(t, added.Seq, appendOK(t, s, msg("m3", c.ID)).MembersSeq)
}

func TestOpenRejectsNewerSchema(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "parley.db")
	require.NoError(t, open(t, path).Close())

	db := rawDB(t, path)
	_, err := db.ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, name, applied_at) VALUES (999999, 'future', 0)`)
	require.NoError(t, err)
	require.NoError(t, db.Close())

	_, err = embedded.Open(t.Context(), embedded.Config{Path: path})
	require.ErrorContains(t, err, "newer")
}

func TestOpenRejectsBadPaths(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		path string
	}{
		{"empty", ""},
		{"memory", ":memory:"},
		{"uri", "file:parley.db"},
		{"query", filepath.Join(t.TempDir(), "parley.db?mode=ro")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := embedded.Open(t.Context(), embedded.Config{Path: tc.path})
			require.Error(t, err)
		})
	}
}

// TestSurvivesSIGKILL appends in a child process, kills it with SIGKILL as
// soon as it reports the commit, and finds every acknowledged message.
func TestSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "parley.db")

	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), helperDBEnv+"="+path)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	// The child blocks reading its stdin, which stays open until it dies.
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	defer func() { _ = in.Close() }()
	require.NoError(t, cmd.Start())

	// The child prints "acked N" after AppendMessages returned for N
	// messages, then blocks until killed.
	sc := bufio.NewScanner(out)
	acked := -1
	for sc.Scan() {
		if n, ok := parseAcked(sc.Text()); ok {
			acked = n
			break
		}
	}
	require.Positive(t, acked, "the helper never reported a commit")
	require.NoError(t, cmd.Process.Kill()) // SIGKILL
	_ = cmd.Wait()

	s := open(t, path)
	c, err := s.GetConversation(t.Context(), "c1")
	require.NoError(t, err)
	require.Equal(t, uint64(acked), c.LastSeq, "every acknowledged message survived")
}

// helperDBEnv names the database TestSurvivesSIGKILL's child process
// appends to; TestMain runs the child instead of the tests when it is set.
const helperDBEnv = "PARLEY_EMBEDDED_HELPER_DB"

func TestMain(m *testing.M) {
	if path := os.Getenv(helperDBEnv); path != "" {
		if err := appendThenHang(path); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// appendThenHang is TestSurvivesSIGKILL's child: it commits messages,
// reports how many, and waits with the store open to be killed.
func appendThenHang(path string) error {
	ctx := context.Background()
	s, err := embedded.Open(ctx, embedded.Config{Path: path})
	if err != nil {
		return err
	}
	now := time.Now()
	for _, id := range []string{"a", "b"} {
		if err := s.CreateUser(ctx, storage.User{ID: id, Username: "name-" + id, DisplayName: id, PasswordHash: "h", CreatedAt: now}); err != nil {
			return err
		}
	}
	if _, _, err := s.GetOrCreateDirect(ctx, "c1", "a", "b", now); err != nil {
		return err
	}
	const batches, batch = 20, 50
	for i := range batches {
		msgs := make([]storage.NewMessage, batch)
		for j := range msgs {
			msgs[j] = storage.NewMessage{
				ID: fmt.Sprintf("m%d-%d", i, j), ConversationID: "c1", SenderID: "a",
				ClientMsgID: fmt.Sprintf("c%d-%d", i, j), Kind: storage.MessageText, Body: []byte("x"),
			}
		}
		if _, err := s.AppendMessages(ctx, msgs); err != nil {
			return err
		}
	}
	fmt.Printf("acked %d\n", batches*batch)
	// Hang with the store open until the parent kills the process (its
	// stdin never ends before that).
	_, _ = io.Copy(io.Discard, os.Stdin)
	return errors.New("stdin closed before SIGKILL")
}

func parseAcked(line string) (int, bool) {
	var n int
	if _, err := fmt.Sscanf(line, "acked %d", &n); err != nil {
		return 0, false
	}
	return n, true
}

func open(t testing.TB, path string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(context.Background(), embedded.Config{Path: path})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path+"?_busy_timeout=5000")
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func user(t testing.TB, s storage.Store, id string) storage.User {
	t.Helper()
	u := storage.User{ID: id, Username: "name-" + id, DisplayName: id, PasswordHash: "h",
		CreatedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	require.NoError(t, s.CreateUser(context.Background(), u))
	return u
}

func appendOK(t testing.TB, s storage.Store, msgs ...storage.NewMessage) storage.Message {
	t.Helper()
	res, err := s.AppendMessages(context.Background(), msgs)
	require.NoError(t, err)
	for _, r := range res {
		require.NoError(t, r.Err)
	}
	return res[len(res)-1].Message
}

// TestCloseDuringCalls closes the store under concurrent appends and reads:
// each call either completes or fails with ErrUnavailable.
func TestCloseDuringCalls(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, filepath.Join(t.TempDir(), "parley.db"))
	a, b := user(t, s, "a"), user(t, s, "b")
	c, _, err := s.GetOrCreateDirect(ctx, "c1", a.ID, b.ID, time.Now())
	require.NoError(t, err)

	started := make(chan struct{})
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				if i == 10 && w == 0 {
					close(started)
				}
				var err error
				if w%2 == 0 {
					_, err = s.AppendMessages(ctx, []storage.NewMessage{{
						ID: fmt.Sprintf("m%d-%d", w, i), ConversationID: c.ID, SenderID: a.ID,
						ClientMsgID: fmt.Sprintf("c%d-%d", w, i), Kind: storage.MessageText, Body: []byte("x"),
					}})
				} else {
					_, _, err = s.History(ctx, storage.HistoryQuery{ConversationID: c.ID, Direction: storage.Before, Limit: 10})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	<-started
	require.NoError(t, s.Close())
	wg.Wait()
	close(errs)
	for err := range errs {
		require.ErrorIs(t, err, storage.ErrUnavailable)
	}
}

// TestNoGoroutineLeak: after Close, the store's goroutines (the
// checkpointer, database/sql's openers) are gone. Not parallel: it counts
// the process's goroutines.
func TestNoGoroutineLeak(t *testing.T) {
	base := runtime.NumGoroutine()
	s, err := embedded.Open(t.Context(), embedded.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	require.NoError(t, err)
	a, b := user(t, s, "a"), user(t, s, "b")
	c, _, err := s.GetOrCreateDirect(t.Context(), "c1", a.ID, b.ID, time.Now())
	require.NoError(t, err)
	appendOK(t, s, storage.NewMessage{ID: "m1", ConversationID: c.ID, SenderID: a.ID, Kind: storage.MessageText, Body: []byte("x")})
	_, err = s.ListConversations(t.Context(), a.ID)
	require.NoError(t, err)

	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	// A bounded poll (as nats' checkFor): database/sql's goroutines end
	// shortly after Close returns. require.Eventually would count its own.
	deadline := time.Now().Add(5 * time.Second)
	for n := runtime.NumGoroutine(); n > base; n = runtime.NumGoroutine() {
		require.True(t, time.Now().Before(deadline), "goroutines: %d, before Open: %d", n, base)
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAnalyticsConformance(t *testing.T) {
	t.Parallel()
	analyticstest.Run(t, func(t *testing.T) analyticstest.Backend {
		return open(t, filepath.Join(t.TempDir(), "parley.db"))
	})
}

func TestFirstUser(t *testing.T) {
	t.Parallel()
	storagetest.RunFirstUser(t, func(t *testing.T) storagetest.FirstUserStore {
		return open(t, filepath.Join(t.TempDir(), "parley.db"))
	})
}
