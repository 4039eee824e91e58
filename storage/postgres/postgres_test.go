package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/postgres"
	"github.com/parley-im/parley/storage/storagetest"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// pg is the server every test of this binary shares; each test gets its
// own schema (or database).
var pg *realsvc.Postgres

func TestMain(m *testing.M) {
	var err error
	pg, err = realsvc.StartPostgres()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := pg.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storagetest.Run(t, func(t *testing.T) storage.Store {
		return open(t, pg.NewSchema(t))
	})
}

// TestMigrateConcurrentOpens opens one fresh database from four goroutines
// at once (four pools: four processes starting together). The advisory
// lock serialises the migrations: all succeed, the schema is applied once
// and all share one epoch; Migrate afterwards changes nothing.
func TestMigrateConcurrentOpens(t *testing.T) {
	t.Parallel()
	dsn := pg.NewDatabase(t)
	const n = 4
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = postgres.Open(t.Context(), postgres.Config{DSN: dsn, MaxConns: 2})
		})
	}
	wg.Wait()
	epochs := map[string]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		t.Cleanup(func() { _ = stores[i].Close() })
		e, err := stores[i].Epoch(t.Context())
		require.NoError(t, err)
		epochs[e] = true
	}
	require.Len(t, epochs, 1, "one epoch for all")

	require.NoError(t, postgres.Migrate(t.Context(), dsn))
	require.NoError(t, postgres.Migrate(t.Context(), dsn))
	conn, err := pgx.Connect(t.Context(), dsn)
	require.NoError(t, err)
	defer func() { _ = conn.Close(context.Background()) }()
	var rows, metas int
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM schema_migrations`).Scan(&rows))
	require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM meta`).Scan(&metas))
	files, err := filepath.Glob("migrations/*.sql")
	require.NoError(t, err)
	require.Equal(t, len(files), rows, "each migration is recorded once")
	require.Equal(t, 1, metas)
}

// TestReopenKeepsData closes a store and opens the schema again: the
// epoch, the data, idempotency keys and seqs carry on.
func TestReopenKeepsData(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	s := open(t, dsn)
	epoch, err := s.Epoch(ctx)
	require.NoError(t, err)
	a, b := user(t, s, "a"), user(t, s, "b")
	dev := storage.Device{ID: "dev-a", UserID: a.ID, Name: "phone", CreatedAt: now}
	require.NoError(t, s.CreateDevice(ctx, dev, storage.RefreshToken{Hash: []byte("h1"), ExpiresAt: now.Add(time.Hour)}))
	c, _, err := s.GetOrCreateDirect(ctx, "c1", a.ID, b.ID, now)
	require.NoError(t, err)
	res, err := s.AppendMessages(ctx, []storage.NewMessage{{
		ID: "m1", ConversationID: c.ID, SenderID: a.ID, SenderDeviceID: dev.ID,
		ClientMsgID: "cm1", Kind: storage.MessageText, Body: []byte("hello"), CreatedAt: now,
	}})
	require.NoError(t, err)
	sent := res[0].Message
	require.NoError(t, s.SaveCursors(ctx, []storage.Cursor{{DeviceID: dev.ID, ConversationID: c.ID, Seq: 1}}))
	require.NoError(t, s.Close())

	s = open(t, dsn)
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

	res, err = s.AppendMessages(ctx, []storage.NewMessage{
		{ID: "m1-retry", ConversationID: c.ID, SenderID: a.ID, ClientMsgID: "cm1", Kind: storage.MessageText, Body: []byte("hello")},
		{ID: "m2", ConversationID: c.ID, SenderID: b.ID, ClientMsgID: "cm2", Kind: storage.MessageText, Body: []byte("hi")},
	})
	require.NoError(t, err)
	require.True(t, res[0].Duplicate)
	require.Equal(t, sent, res[0].Message)
	require.Equal(t, uint64(2), res[1].Message.Seq)
}

// TestMigrateMembersSeq upgrades a schema written before migration 0002
// (a current one with the column dropped and the version forgotten): an
// existing group reports MembersSeq 0 until its next membership change,
// which sets it as on any group.
func TestMigrateMembersSeq(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	s := open(t, dsn)
	a, b, c := user(t, s, "a"), user(t, s, "b"), user(t, s, "c")
	_, _, err := s.CreateGroup(ctx, storage.NewGroup{ID: "g", OwnerID: a.ID, MemberIDs: []string{b.ID},
		CreatedAt: now, Notice: notice(a, "n1", now)})
	require.NoError(t, err)
	require.Equal(t, uint64(1), appendOne(t, s, groupMessage("m1", b, now)).MembersSeq)
	require.NoError(t, s.Close())

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	// 0003 and 0004 undone too: every migration from 0002 on runs again.
	_, err = conn.Exec(ctx, `DROP TABLE message_search;
		DROP TABLE media, blobs;
		ALTER TABLE messages DROP COLUMN media_id;
		ALTER TABLE conversations DROP COLUMN members_seq;
		DELETE FROM schema_migrations WHERE version >= 2`)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))

	s = open(t, dsn)
	old, err := s.GetMessage(ctx, "g", 2)
	require.NoError(t, err)
	require.Equal(t, "m1", old.ID)
	require.Empty(t, old.MediaID, "a message written before 0003 carries no media")
	require.Zero(t, appendOne(t, s, groupMessage("m2", b, now)).MembersSeq, "unknown before the migration")
	added, err := s.AddMembers(ctx, "g", []string{c.ID}, 0, notice(a, "n2", now))
	require.NoError(t, err)
	require.Equal(t, added.Seq, added.MembersSeq)
	require.Equal(t, added.Seq, appendOne(t, s, groupMessage("m3", c, now)).MembersSeq)
}

// TestMigrateSearch upgrades a schema written before migration 0004: its
// messages are not found (they have no words in the index), their recall
// still works, and messages appended after the upgrade are found.
func TestMigrateSearch(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := open(t, dsn)
	a, b := user(t, s, "a"), user(t, s, "b")
	search := func(s storage.Store, word string) []storage.SearchHit {
		hits, _, err := s.SearchMessages(ctx, storage.SearchQuery{UserID: b.ID, Terms: []string{word}, Limit: 10})
		require.NoError(t, err)
		return hits
	}
	_, _, err := s.CreateGroup(ctx, storage.NewGroup{ID: "g", OwnerID: a.ID, MemberIDs: []string{b.ID},
		CreatedAt: now, Notice: notice(a, "n1", now)})
	require.NoError(t, err)
	m1 := groupMessage("m1", a, now)
	m1.SearchText = "hello before"
	old := appendOne(t, s, m1)
	require.NoError(t, s.Close())

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, `DROP TABLE message_search; DELETE FROM schema_migrations WHERE version >= 4`)
	require.NoError(t, err)
	require.NoError(t, conn.Close(ctx))

	s = open(t, dsn)
	require.Empty(t, search(s, "hello"), "written before the index")
	_, _, err = s.RecallMessage(ctx, "g", old.Seq, notice(a, "n2", now))
	require.NoError(t, err)
	m2 := groupMessage("m2", a, now)
	m2.SearchText = "hello after"
	appendOne(t, s, m2)
	hits := search(s, "hello")
	require.Len(t, hits, 1)
	require.Equal(t, "m2", hits[0].Message.ID)
}

// TestMembersSeqAcrossProcesses changes a group's membership through one
// store while another (a second server process) appends to it: each
// append carries exactly the newest change committed before it, as the
// fan-out of the appending process needs to notice its member list is
// stale.
func TestMembersSeqAcrossProcesses(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	appender, changer := open(t, dsn), open(t, dsn)
	now := time.Now()
	a, b, x := user(t, appender, "a"), user(t, appender, "b"), user(t, appender, "x")
	_, created, err := changer.CreateGroup(ctx, storage.NewGroup{ID: "g", OwnerID: a.ID, MemberIDs: []string{b.ID},
		CreatedAt: now, Notice: notice(a, "n0", now)})
	require.NoError(t, err)

	const changes, batches, batch = 20, 40, 5
	var (
		wg      sync.WaitGroup
		changed = []uint64{created.Seq}
		sent    []storage.Message
		errs    = make(chan error, 2)
	)
	wg.Go(func() {
		for i := range changes {
			var (
				n   storage.Message
				err error
			)
			if i%2 == 0 {
				n, err = changer.AddMembers(ctx, "g", []string{x.ID}, 0, notice(a, fmt.Sprintf("n%d", i+1), now))
			} else {
				n, err = changer.RemoveMember(ctx, "g", x.ID, notice(a, fmt.Sprintf("n%d", i+1), now))
			}
			if err != nil {
				errs <- err
				return
			}
			changed = append(changed, n.Seq)
		}
	})
	wg.Go(func() {
		for i := range batches {
			msgs := make([]storage.NewMessage, batch)
			for j := range msgs {
				msgs[j] = groupMessage(fmt.Sprintf("m%d.%d", i, j), b, now)
			}
			res, err := appender.AppendMessages(ctx, msgs)
			if err != nil {
				errs <- err
				return
			}
			for _, r := range res {
				if r.Err != nil {
					errs <- r.Err
					return
				}
				sent = append(sent, r.Message)
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Len(t, sent, batches*batch)
	for _, m := range sent {
		i, _ := slices.BinarySearch(changed, m.Seq) // changed is ascending
		require.Equal(t, changed[i-1], m.MembersSeq, "message at seq %d", m.Seq)
	}
}

// TestTwoProcessesGapless appends into one conversation from two stores
// (two pools, as two server processes would), with retries of the same
// keys racing each other: seqs are 1..N without gaps or repeats, and each
// key is committed once.
func TestTwoProcessesGapless(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	s1, s2 := open(t, dsn), open(t, dsn)
	a, b := user(t, s1, "a"), user(t, s1, "b")
	c, _, err := s1.GetOrCreateDirect(ctx, "c1", a.ID, b.ID, time.Now())
	require.NoError(t, err)

	const (
		perWorker = 100
		batch     = 5
	)
	workers := []struct {
		s      *postgres.Store
		sender storage.User
	}{{s1, a}, {s2, b}, {s1, b}, {s2, a}}
	var (
		mu   sync.Mutex
		seen = map[uint64]string{}
		keys = map[string]uint64{}
	)
	errs := make(chan error, len(workers))
	var wg sync.WaitGroup
	for w, wk := range workers {
		wg.Go(func() {
			for i := 0; i < perWorker; i += batch {
				msgs := make([]storage.NewMessage, batch)
				for j := range msgs {
					// Workers 0/2 and 1/3 share a sender's keys
					// pairwise (a in 0 and 3, b in 1 and 2), so the
					// same key races between processes.
					key := fmt.Sprintf("%s-%d", wk.sender.ID, i+j)
					msgs[j] = storage.NewMessage{
						ID: fmt.Sprintf("w%d-%d", w, i+j), ConversationID: c.ID, SenderID: wk.sender.ID,
						ClientMsgID: key, Kind: storage.MessageText, Body: []byte("x"), CreatedAt: time.Now(),
					}
				}
				res, err := wk.s.AppendMessages(ctx, msgs)
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, r := range res {
					if r.Err != nil {
						mu.Unlock()
						errs <- r.Err
						return
					}
					if prev, ok := keys[r.Message.ClientMsgID]; ok && prev != r.Message.Seq {
						mu.Unlock()
						errs <- fmt.Errorf("key %s committed at %d and %d", r.Message.ClientMsgID, prev, r.Message.Seq)
						return
					}
					keys[r.Message.ClientMsgID] = r.Message.Seq
					if !r.Duplicate {
						if id, ok := seen[r.Message.Seq]; ok {
							mu.Unlock()
							errs <- fmt.Errorf("seq %d given to %s and %s", r.Message.Seq, id, r.Message.ID)
							return
						}
						seen[r.Message.Seq] = r.Message.ID
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	const n = 2 * perWorker // two senders, perWorker keys each
	require.Len(t, keys, n)
	require.Len(t, seen, n)
	for seq := uint64(1); seq <= n; seq++ {
		require.Contains(t, seen, seq)
	}
	got, err := s2.GetConversation(ctx, c.ID)
	require.NoError(t, err)
	require.Equal(t, uint64(n), got.LastSeq)
}

// TestOpenErrors: a bad DSN does not echo it back, and an unreachable
// server is ErrUnavailable.
func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, err := postgres.Open(t.Context(), postgres.Config{DSN: "postgres://u:secret@127.0.0.1:bad/db"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "secret")

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err = postgres.Open(ctx, postgres.Config{DSN: "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=5"})
	require.ErrorIs(t, err, storage.ErrUnavailable)
}

// notice is a system notice by u.
func notice(u storage.User, id string, at time.Time) storage.NewMessage {
	return storage.NewMessage{ID: id, SenderID: u.ID, Kind: storage.MessageSystem, CreatedAt: at}
}

// groupMessage is a text message from u to the group "g".
func groupMessage(id string, u storage.User, at time.Time) storage.NewMessage {
	return storage.NewMessage{ID: id, ConversationID: "g", SenderID: u.ID, ClientMsgID: id,
		Kind: storage.MessageText, Body: []byte("x"), CreatedAt: at}
}

// appendOne appends m and requires it to commit.
func appendOne(tb testing.TB, s storage.Store, m storage.NewMessage) storage.Message {
	tb.Helper()
	res, err := s.AppendMessages(context.Background(), []storage.NewMessage{m})
	require.NoError(tb, err)
	require.NoError(tb, res[0].Err)
	return res[0].Message
}

func open(tb testing.TB, dsn string) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn, MaxConns: 4})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

func user(tb testing.TB, s storage.Store, name string) storage.User {
	tb.Helper()
	u := storage.User{ID: "u-" + name, Username: name, DisplayName: name, PasswordHash: "x",
		CreatedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	require.NoError(tb, s.CreateUser(context.Background(), u))
	return u
}

func TestFirstUser(t *testing.T) {
	t.Parallel()
	storagetest.RunFirstUser(t, func(t *testing.T) storagetest.FirstUserStore {
		return open(t, pg.NewSchema(t))
	})
}
