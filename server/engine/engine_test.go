package engine_test

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/embedded"
)

type fixture struct {
	store *embedded.Store
	hub   *hub.Hub
	eng   *engine.Engine
	conv  string
	users []string
}

// newFixture starts an engine on a real embedded store with a direct
// conversation between two users.
func newFixture(t *testing.T, cfg engine.Config) *fixture {
	t.Helper()
	ctx := t.Context()
	st, err := embedded.Open(ctx, embedded.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	now := time.Now()
	users := []string{"u-alice", "u-bob"}
	for _, u := range users {
		require.NoError(t, st.CreateUser(ctx, storage.User{ID: u, Username: u, DisplayName: u, PasswordHash: "x", CreatedAt: now}))
		require.NoError(t, st.CreateDevice(ctx, storage.Device{ID: "d-" + u, UserID: u, CreatedAt: now},
			storage.RefreshToken{Hash: []byte(u), DeviceID: "d-" + u, ExpiresAt: now.Add(time.Hour)}))
	}
	c, _, err := st.GetOrCreateDirect(ctx, "c-1", users[0], users[1], now)
	require.NoError(t, err)
	h := hub.New(hub.Config{QueueLen: 100_000, MaxPending: 100_000})
	e := engine.New(cfg, st, h, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	e.Start()
	t.Cleanup(func() { require.NoError(t, e.Close(context.Background())) })
	return &fixture{store: st, hub: h, eng: e, conv: c.ID, users: users}
}

func (f *fixture) msg(sender, clientID string) storage.NewMessage {
	return storage.NewMessage{
		ID: fmt.Sprintf("id-%s-%s", sender, clientID), ConversationID: f.conv, SenderID: sender, SenderDeviceID: "d-" + sender,
		ClientMsgID: clientID, Kind: storage.MessageText, Body: []byte("hi"), CreatedAt: time.Now(),
	}
}

// frames reads n frames the hub queued for c.
func frames(t *testing.T, c *hub.Conn, n int) []*parleyv1.ServerFrame {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	out := make([]*parleyv1.ServerFrame, 0, n)
	for len(out) < n {
		f, ok := c.Next(ctx)
		require.True(t, ok, "got %d of %d frames", len(out), n)
		out = append(out, f)
	}
	return out
}

func TestConcurrentSendsAreGaplessAndDeliveredInOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.DefaultConfig())
	conn, _ := f.hub.Register(f.users[1], "d-u-bob")
	require.NoError(t, f.eng.CatchUp(t.Context(), conn))
	require.NotNil(t, frames(t, conn, 1)[0].GetSyncComplete())

	const senders, each = 8, 100
	var wg sync.WaitGroup
	for s := range senders {
		wg.Go(func() {
			for i := range each {
				res, err := f.eng.Send(t.Context(), f.msg(f.users[s%2], fmt.Sprintf("s%d-%d", s, i)))
				if err != nil || res.Err != nil {
					t.Errorf("send: %v %v", err, res.Err)
					return
				}
			}
		})
	}
	wg.Wait()
	got := frames(t, conn, senders*each)
	for i, fr := range got {
		// Bob's device gets its own messages as SendAcks, in place.
		m := fr.GetMessage()
		if m == nil {
			m = fr.GetSendAck().GetMessage()
		}
		require.Equal(t, uint64(i+1), m.GetSeq(), "frame %d", i)
	}
}

func TestSendRejectsNonMemberAndDeduplicates(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.DefaultConfig())
	res, err := f.eng.Send(t.Context(), f.msg("u-mallory", "m1"))
	require.NoError(t, err)
	require.ErrorIs(t, res.Err, storage.ErrNotMember)

	first, err := f.eng.Send(t.Context(), f.msg(f.users[0], "m1"))
	require.NoError(t, err)
	again, err := f.eng.Send(t.Context(), f.msg(f.users[0], "m1"))
	require.NoError(t, err)
	require.True(t, again.Duplicate)
	require.Equal(t, first.Message.ID, again.Message.ID)
	require.Equal(t, first.Message.Seq, again.Message.Seq)
}

func TestCatchUpBoundsBacklogWithGap(t *testing.T) {
	t.Parallel()
	cfg := engine.DefaultConfig()
	cfg.CatchupLimit = 5
	f := newFixture(t, cfg)
	for i := range 12 {
		_, err := f.eng.Send(t.Context(), f.msg(f.users[0], fmt.Sprint(i)))
		require.NoError(t, err)
	}
	conn, _ := f.hub.Register(f.users[1], "d-u-bob")
	// A message committed after registration is both in the backlog and
	// delivered live into the hold-back: it must appear exactly once.
	_, err := f.eng.Send(t.Context(), f.msg(f.users[0], "late"))
	require.NoError(t, err)
	require.NoError(t, f.eng.CatchUp(t.Context(), conn))
	got := frames(t, conn, 1+5+1)
	gap := got[0].GetGap()
	require.NotNil(t, gap)
	require.Equal(t, uint64(0), gap.GetFromSeq())
	// 13 messages exist by the time the backlog is read: the newest five
	// come through, the rest are announced.
	require.Equal(t, uint64(8), gap.GetToSeq())
	var seqs []uint64
	for _, fr := range got[1:6] {
		seqs = append(seqs, fr.GetMessage().GetSeq())
	}
	require.Equal(t, []uint64{9, 10, 11, 12, 13}, seqs)
	require.NotNil(t, got[6].GetSyncComplete())
	// Live traffic resumes after the hold-back, without the duplicate.
	_, err = f.eng.Send(t.Context(), f.msg(f.users[0], "live"))
	require.NoError(t, err)
	require.Equal(t, uint64(14), frames(t, conn, 1)[0].GetMessage().GetSeq())
}

func TestAcksMoveCursorsAndShrinkTheBacklog(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.DefaultConfig())
	for i := range 4 {
		_, err := f.eng.Send(t.Context(), f.msg(f.users[0], fmt.Sprint(i)))
		require.NoError(t, err)
	}
	f.eng.Ack("d-u-bob", f.conv, 3)
	conn, _ := f.hub.Register(f.users[1], "d-u-bob")
	// CatchUp flushes the buffered ack first, so only seq 4 is left.
	require.NoError(t, f.eng.CatchUp(t.Context(), conn))
	got := frames(t, conn, 2)
	require.Equal(t, uint64(4), got[0].GetMessage().GetSeq())
	require.NotNil(t, got[1].GetSyncComplete())
}

func TestCloseAnswersEverythingAndRefusesNewWork(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.DefaultConfig())
	waits := make([]func() (engine.SendResult, error), 0, 50)
	for i := range 50 {
		w, err := f.eng.Submit(t.Context(), f.msg(f.users[0], fmt.Sprint(i)))
		require.NoError(t, err)
		waits = append(waits, w)
	}
	f.eng.Ack("d-u-bob", f.conv, 10)
	require.NoError(t, f.eng.Close(t.Context()))
	for _, w := range waits {
		res, err := w()
		require.NoError(t, err)
		require.NoError(t, res.Err)
	}
	_, err := f.eng.Send(t.Context(), f.msg(f.users[0], "after"))
	require.ErrorIs(t, err, engine.ErrClosed)
	require.NoError(t, f.eng.Close(t.Context()), "second Close is a no-op")
	// The final flush wrote the buffered ack.
	backlogs, err := f.store.Backlogs(t.Context(), f.users[1], "d-u-bob")
	require.NoError(t, err)
	require.Len(t, backlogs, 1)
	require.Equal(t, uint64(10), backlogs[0].After)
}

func BenchmarkSend(b *testing.B) {
	ctx := context.Background()
	st, err := embedded.Open(ctx, embedded.Config{Path: filepath.Join(b.TempDir(), "parley.db")})
	require.NoError(b, err)
	defer st.Close()
	now := time.Now()
	const pairs = 100
	convs := make([]string, pairs)
	for i := range pairs {
		a, c := fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)
		require.NoError(b, st.CreateUser(ctx, storage.User{ID: a, Username: a, PasswordHash: "x", CreatedAt: now}))
		require.NoError(b, st.CreateUser(ctx, storage.User{ID: c, Username: c, PasswordHash: "x", CreatedAt: now}))
		conv, _, err := st.GetOrCreateDirect(ctx, fmt.Sprintf("c%d", i), a, c, now)
		require.NoError(b, err)
		convs[i] = conv.ID
	}
	e := engine.New(engine.DefaultConfig(), st, hub.New(hub.DefaultConfig()), slog.New(slog.DiscardHandler))
	e.Start()
	defer e.Close(ctx)
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/pairs + 1
	for i := range pairs {
		wg.Go(func() {
			for n := range per {
				_, err := e.Send(ctx, storage.NewMessage{
					ID: fmt.Sprintf("m%d-%d", i, n), ConversationID: convs[i], SenderID: fmt.Sprintf("a%d", i),
					ClientMsgID: fmt.Sprint(n), Kind: storage.MessageText, Body: []byte("hello"), CreatedAt: now,
				})
				if err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(per*pairs)/b.Elapsed().Seconds(), "msgs/s")
}

// testWriter sends engine logs to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// Two engines on one store stand for two processes of a cluster: a member
// added through one is reached by the other's next fan-out, and a removed
// one is not, although the other had the old member list cached.
func TestMembershipChangedElsewhereReachesTheFanOut(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.DefaultConfig())
	ctx := t.Context()
	now := time.Now()
	carol := "u-carol"
	require.NoError(t, f.store.CreateUser(ctx, storage.User{ID: carol, Username: carol, DisplayName: carol, PasswordHash: "x", CreatedAt: now}))
	notice := func() storage.NewMessage {
		m := f.msg(f.users[0], "")
		m.ID = fmt.Sprintf("notice-%d", time.Now().UnixNano())
		m.Kind = storage.MessageSystem
		return m
	}
	g, err := f.eng.CreateGroup(ctx, storage.NewGroup{ID: "g-1", Title: "g", OwnerID: f.users[0], MemberIDs: []string{f.users[1]}, CreatedAt: now, MaxMembers: 10, Notice: notice()})
	require.NoError(t, err)

	otherHub := hub.New(hub.Config{QueueLen: 1000, MaxPending: 1000})
	other := engine.New(engine.DefaultConfig(), f.store, otherHub, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	other.Start()
	t.Cleanup(func() { require.NoError(t, other.Close(context.Background())) })
	bob, _ := otherHub.Register(f.users[1], "d-"+f.users[1])
	bob.SetLast(g.ID, 1)
	require.True(t, bob.Release(ctx))
	carolConn, _ := otherHub.Register(carol, "d-"+carol)
	require.True(t, carolConn.Release(ctx))
	repairLoop(t, other, bob)
	repairLoop(t, other, carolConn)

	send := func(id string) {
		m := f.msg(f.users[0], id)
		m.ConversationID = g.ID
		res, err := other.Send(ctx, m)
		require.NoError(t, err)
		require.NoError(t, res.Err)
	}
	send("before") // seq 2: the other engine caches [alice, bob]
	require.Equal(t, uint64(2), frames(t, bob, 1)[0].GetMessage().GetSeq())

	_, err = f.eng.AddMembers(ctx, g.ID, []string{carol}, 10, notice()) // seq 3, through the first engine
	require.NoError(t, err)
	send("after-add") // seq 4
	got := frames(t, carolConn, 2)
	require.Equal(t, uint64(3), got[0].GetMessage().GetSeq(), "the new member's join notice, filled in from the store")
	require.Equal(t, uint64(4), got[1].GetMessage().GetSeq(), "and the message committed elsewhere after it")

	_, err = f.eng.RemoveMember(ctx, g.ID, f.users[1], notice()) // seq 5
	require.NoError(t, err)
	send("after-remove") // seq 6
	got = frames(t, carolConn, 2)
	require.Equal(t, uint64(5), got[0].GetMessage().GetSeq(), "the removal notice, filled in from the store")
	require.Equal(t, uint64(6), got[1].GetMessage().GetSeq())
	got = frames(t, bob, 2)
	require.Equal(t, uint64(3), got[0].GetMessage().GetSeq())
	require.Equal(t, uint64(4), got[1].GetMessage().GetSeq())
	_, ok := bob.Next(expired(t))
	require.False(t, ok, "a removed member gets nothing committed after the removal")
}

// expired is a context that has already ended: Next returns at once when
// nothing is queued.
func expired(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// repairLoop does for c what the session's sync goroutine does: fill holes
// in its conversations from the store, until the test ends.
func repairLoop(t *testing.T, e *engine.Engine, c *hub.Conn) {
	go func() {
		for {
			select {
			case <-c.Repairs():
				if err := e.Repair(t.Context(), c); err != nil {
					c.Close(err)
				}
			case <-c.Done():
				return
			}
		}
	}()
	t.Cleanup(func() { c.Close(hub.ErrShutdown) })
}

// countingStore counts AppendMessages calls: one per commit.
type countingStore struct {
	engine.Store
	mu      sync.Mutex
	commits int
}

func (s *countingStore) AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error) {
	s.mu.Lock()
	s.commits++
	s.mu.Unlock()
	return s.Store.AppendMessages(ctx, msgs)
}

// With CommitLinger, a message that finds the committer idle waits for the
// next one, and both go in one commit.
func TestCommitLingerBatchesMessagesThatArriveApart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, engine.DefaultConfig())
	counted := &countingStore{Store: f.store}
	cfg := engine.DefaultConfig()
	cfg.CommitLinger = time.Minute // bounded by the batch filling up or the test's two messages
	cfg.BatchSize = 2
	e := engine.New(cfg, counted, f.hub, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	e.Start()
	t.Cleanup(func() { require.NoError(t, e.Close(context.Background())) })
	first, err := e.Submit(t.Context(), f.msg(f.users[0], "linger-1"))
	require.NoError(t, err)
	second, err := e.Submit(t.Context(), f.msg(f.users[0], "linger-2"))
	require.NoError(t, err)
	for _, wait := range []func() (engine.SendResult, error){first, second} {
		res, err := wait()
		require.NoError(t, err)
		require.NoError(t, res.Err)
	}
	counted.mu.Lock()
	defer counted.mu.Unlock()
	require.Equal(t, 1, counted.commits, "both messages in one commit")
}
