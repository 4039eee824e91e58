package archive_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/archive"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/storagetest"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// TestArchivesEveryMessage: messages committed before the archiver first
// runs (the backfill) and while it runs, group notices and a recall all
// reach the archive, each once, in their current state; the metrics count
// them and the lag returns to zero.
func TestArchivesEveryMessage(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := b.open(t)
			db := openArchive(t, ch)
			w := newWorld(t, s, 4)
			// Sent before the archive is enabled: the archiver's backfill
			// queues them.
			before, err := w.send(ctx, 30)
			require.NoError(t, err)

			reg := prometheus.NewRegistry()
			m, err := metrics.New(reg)
			require.NoError(t, err)
			r := start(t, archive.New(testConfig(), s, db, "node", discard(), m.Archive))
			for range 10 {
				_, err := w.send(ctx, 17)
				require.NoError(t, err)
			}
			_, _, err = s.RecallMessage(ctx, before[3].ConversationID, before[3].Seq,
				storage.NewMessage{ID: "recall-notice", SenderID: w.users[0].ID, Kind: storage.MessageSystem, CreatedAt: time.Now()})
			require.NoError(t, err)
			waitDrained(t, s)
			requireArchived(t, w, db)
			got, err := db.Messages(ctx, before[3].ConversationID, before[3].Seq, before[3].Seq, 0)
			require.NoError(t, err)
			require.Len(t, got, 1)
			require.Nil(t, got[0].Body)
			require.False(t, got[0].RecalledAt.IsZero())

			// At least 30+170 messages, 2 group notices and the recall
			// notice: the backfill may queue messages the triggers queued
			// too, and a recall may come before or after its message's
			// first state was archived, so the count of states written
			// varies. requireArchived holds the archive to exactly once.
			require.GreaterOrEqual(t, value(reg, "parley_archive_messages_total"), 30.0+170+2+1)
			require.Positive(t, value(reg, "parley_archive_backfilled_messages_total"))
			require.InDelta(t, 1.0, value(reg, "parley_archive_leader"), 0)
			r.stop(t)
			require.InDelta(t, 0.0, value(reg, "parley_archive_leader"), 0)
		})
	}
}

// ackSpy is a store whose acks fail while fail is set, so the outbox
// does not drain.
type ackSpy struct {
	storagetest.ArchiveStore
	fail atomic.Bool
}

func (s *ackSpy) AckOutbox(ctx context.Context, ids []int64) error {
	if s.fail.Load() {
		return storage.ErrUnavailable
	}
	return s.ArchiveStore.AckOutbox(ctx, ids)
}

// nopArchive accepts every write and keeps nothing.
type nopArchive struct{}

func (nopArchive) ArchiveMessages(context.Context, []storage.ArchiveRecord) error { return nil }

// TestLagMetrics: the lag gauges report the outbox as it is, both when a
// read shorter than a batch is the whole outbox and when a full one
// needs OutboxLag; once the outbox drains they return to zero.
func TestLagMetrics(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	for _, tc := range []struct {
		name    string
		entries int
	}{
		{"short_read", cfg.BatchSize - 20},
		{"full_read", cfg.BatchSize + 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := &ackSpy{ArchiveStore: openEmbedded(t)}
			s.fail.Store(true)
			w := newWorld(t, s, 1) // one direct conversation: no notices
			require.NoError(t, s.EnableArchive(ctx))
			_, err := w.send(ctx, tc.entries)
			require.NoError(t, err)

			reg := prometheus.NewRegistry()
			m, err := metrics.New(reg)
			require.NoError(t, err)
			start(t, archive.New(cfg, s, nopArchive{}, "node", discard(), m.Archive))
			require.Eventually(t, func() bool {
				return value(reg, "parley_archive_outbox_entries") == float64(tc.entries) &&
					value(reg, "parley_archive_outbox_oldest_age_seconds") > 0
			}, 30*time.Second, 5*time.Millisecond)

			s.fail.Store(false)
			waitDrained(t, s)
			require.Eventually(t, func() bool {
				return value(reg, "parley_archive_outbox_entries") == 0 &&
					value(reg, "parley_archive_outbox_oldest_age_seconds") == 0
			}, 30*time.Second, 5*time.Millisecond)
		})
	}
}

// value is the value of the single series of a metric family in reg
// (counter or gauge); -1 when there is none.
func value(reg *prometheus.Registry, name string) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return -1
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		v := mf.GetMetric()[0]
		if v.GetCounter() != nil {
			return v.GetCounter().GetValue()
		}
		return v.GetGauge().GetValue()
	}
	return -1
}

// TestLateCommitReachesArchive is the out-of-order commit end to end on
// PostgreSQL: transaction A takes the lower outbox id and stays open
// while B commits and is archived (and acked); A, committed afterwards,
// is archived too.
func TestLateCommitReachesArchive(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	s := openPostgres(t, dsn)
	db := openArchive(t, ch)
	w := newWorld(t, s, 1)
	require.NoError(t, s.EnableArchive(ctx))

	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	txA, err := conn.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = txA.Rollback(context.Background()) })
	_, err = txA.Exec(ctx, `INSERT INTO conversations (id, kind, last_seq, created_at, last_message_at)
		VALUES ('late', 1, 1, now(), now())`)
	require.NoError(t, err)
	_, err = txA.Exec(ctx, `INSERT INTO messages (conversation_id, seq, id, sender_id, kind, body, created_at)
		VALUES ('late', 1, 'm-late', $1, 1, 'late', now())`, w.users[0].ID)
	require.NoError(t, err)

	start(t, archive.New(testConfig(), s, db, "node", discard(), nil))
	sent, err := w.send(ctx, 5)
	require.NoError(t, err)
	waitDrained(t, s) // B's entries are archived and acked past A's id
	n, err := db.Count(ctx)
	require.NoError(t, err)
	require.Equal(t, uint64(len(sent)), n, "B only; not A yet")

	require.NoError(t, txA.Commit(ctx))
	require.Eventually(t, func() bool {
		got, err := db.Messages(context.Background(), "late", 1, 1, 0)
		return err == nil && len(got) == 1 && got[0].ID == "m-late"
	}, 30*time.Second, 10*time.Millisecond)
	waitDrained(t, s)
	w.convs = append(w.convs, "late") // for requireArchived
	requireArchived(t, w, db)
}

// leaseSpy wraps a store and records its archiver's batches.
type leaseSpy struct {
	storagetest.ArchiveStore
	reads atomic.Int64
	// inBatch counts archivers between ReadOutbox and AckOutbox, shared
	// by the spies of one test; overlap records it above 1.
	inBatch *atomic.Int64
	overlap *atomic.Bool
	// crashed makes ReleaseLease a no-op, as if the process died.
	crashed atomic.Bool
	// dst is the archive; the spy is its archiver's archive too, so that
	// a failed write ends the batch.
	dst storage.MessageArchive
}

func (s *leaseSpy) ReadOutbox(ctx context.Context, limit int) ([]storage.OutboxEntry, error) {
	if s.inBatch.Add(1) > 1 {
		s.overlap.Store(true)
	}
	s.reads.Add(1)
	es, err := s.ArchiveStore.ReadOutbox(ctx, limit)
	if err != nil || len(es) == 0 {
		s.inBatch.Add(-1)
	}
	return es, err
}

func (s *leaseSpy) AckOutbox(ctx context.Context, ids []int64) error {
	defer s.inBatch.Add(-1)
	return s.ArchiveStore.AckOutbox(ctx, ids)
}

func (s *leaseSpy) LoadMessages(ctx context.Context, keys []storage.MessageKey) ([]storage.ArchiveRecord, error) {
	ms, err := s.ArchiveStore.LoadMessages(ctx, keys)
	if err != nil {
		s.inBatch.Add(-1)
	}
	return ms, err
}

// ArchiveMessages writes to dst; a failed write (the archiver stopped
// mid-batch) ends the batch.
func (s *leaseSpy) ArchiveMessages(ctx context.Context, msgs []storage.ArchiveRecord) error {
	err := s.dst.ArchiveMessages(ctx, msgs)
	if err != nil {
		s.inBatch.Add(-1)
	}
	return err
}

func (s *leaseSpy) ReleaseLease(ctx context.Context, name, holder string) error {
	if s.crashed.Load() {
		return nil
	}
	return s.ArchiveStore.ReleaseLease(ctx, name, holder)
}

// TestOneArchiverAtATime runs two archivers on one PostgreSQL: only one
// archives (the other never reads the outbox, and no two batches
// overlap); when the holder dies without releasing the lease, the other
// takes over within about the lease's TTL; when that one stops cleanly,
// a third takes over at once. Every message is archived once.
func TestOneArchiverAtATime(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dsn := pg.NewSchema(t)
	db := openArchive(t, ch)
	var inBatch atomic.Int64
	var overlap atomic.Bool
	spy := func() *leaseSpy {
		return &leaseSpy{ArchiveStore: openPostgres(t, dsn), inBatch: &inBatch, overlap: &overlap, dst: db}
	}
	a, b := spy(), spy()
	w := newWorld(t, a, 3)
	cfg := testConfig()
	ra := start(t, archive.New(cfg, a, a, "a", discard(), nil))
	rb := start(t, archive.New(cfg, b, b, "b", discard(), nil))

	var holder, other *leaseSpy
	var rHolder, rOther *running
	require.Eventually(t, func() bool { return a.reads.Load() > 0 || b.reads.Load() > 0 }, 30*time.Second, 5*time.Millisecond)
	holder, other, rHolder, rOther = a, b, ra, rb
	if b.reads.Load() > 0 {
		holder, other, rHolder, rOther = b, a, rb, ra
	}
	for range 5 {
		_, err := w.send(ctx, 40)
		require.NoError(t, err)
	}
	waitDrained(t, a.ArchiveStore)
	// Many idle polls of the holder pass while the other keeps trying.
	target := holder.reads.Load() + 20
	require.Eventually(t, func() bool { return holder.reads.Load() >= target }, 30*time.Second, 5*time.Millisecond)
	require.Zero(t, other.reads.Load(), "the other archiver never archived while the lease was held")

	holder.crashed.Store(true)
	crashedAt := time.Now()
	rHolder.stop(t)
	require.Eventually(t, func() bool { return other.reads.Load() > 0 }, 30*time.Second, 5*time.Millisecond)
	require.Less(t, time.Since(crashedAt), 2*cfg.LeaseTTL, "taken over within about the TTL")
	_, err := w.send(ctx, 40)
	require.NoError(t, err)
	waitDrained(t, a.ArchiveStore)

	// A clean stop releases the lease: it is free at once, without
	// waiting for the TTL (which a takeover within the TTL alone would
	// not show), and a third archiver takes it.
	rOther.stop(t)
	ok, err := a.AcquireLease(ctx, archive.LeaseName, "probe", time.Hour)
	require.NoError(t, err)
	require.True(t, ok, "lease released on a clean stop")
	// Past the spy: a may be the crashed one, whose release does nothing.
	require.NoError(t, a.ArchiveStore.ReleaseLease(ctx, archive.LeaseName, "probe"))
	c := spy()
	start(t, archive.New(cfg, c, c, "c", discard(), nil))
	require.Eventually(t, func() bool { return c.reads.Load() > 0 }, cfg.LeaseTTL, 5*time.Millisecond)
	_, err = w.send(ctx, 40)
	require.NoError(t, err)
	waitDrained(t, a.ArchiveStore)
	require.False(t, overlap.Load(), "two archivers were in a batch at once")
	requireArchived(t, w, db)
}

// cancelAfter is an archive that cancels its archiver after its n-th
// write has reached ClickHouse and before the archiver can ack it: a kill
// in the middle of a batch. killed is that write's messages.
type cancelAfter struct {
	storage.MessageArchive
	n      atomic.Int64
	cancel func()
	killed []storage.MessageKey
}

func (c *cancelAfter) ArchiveMessages(ctx context.Context, msgs []storage.ArchiveRecord) error {
	err := c.MessageArchive.ArchiveMessages(ctx, msgs)
	if err == nil && c.n.Add(-1) == 0 {
		for _, r := range msgs {
			c.killed = append(c.killed, storage.MessageKey{ConversationID: r.Message.ConversationID, Seq: r.Message.Seq})
		}
		c.cancel()
	}
	return err
}

// TestFaultKillAndRestart: while writers send messages, the archiver is
// killed in the middle of a batch (its write reached ClickHouse, its ack
// did not happen), a second archiver starts, ClickHouse is halted and
// restarted under it, a recall happens during the outage; after the
// writers finish, the archive holds every message of the store exactly
// once, in its current state.
func TestFaultKillAndRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	own := realsvc.StartClickHouseTB(t)
	s := openPostgres(t, pg.NewSchema(t))
	db := openArchive(t, own)
	w := newWorld(t, s, 5)
	cfg := testConfig()

	const writers, batches, batch = 3, 60, 10
	var (
		wg      sync.WaitGroup
		sendErr = make(chan error, writers)
		sent    atomic.Int64
	)
	for range writers {
		wg.Go(func() {
			for range batches {
				ms, err := w.send(ctx, batch)
				if err != nil {
					sendErr <- err
					return
				}
				sent.Add(int64(len(ms)))
			}
		})
	}

	// First archiver: killed after its third write, before the ack.
	ctx1, cancel1 := context.WithCancel(ctx)
	dst1 := &cancelAfter{MessageArchive: db, cancel: cancel1}
	dst1.n.Store(3)
	done1 := make(chan error, 1)
	a1 := archive.New(cfg, s, dst1, "first", discard(), nil)
	go func() { done1 <- a1.Run(ctx1) }()
	require.NoError(t, <-done1)
	cancel1()
	// The killed batch was written but not acked: it is all still in the
	// outbox, to be archived again.
	require.NotEmpty(t, dst1.killed)
	pending, err := s.ReadOutbox(ctx, 1_000_000)
	require.NoError(t, err)
	inOutbox := make(map[storage.MessageKey]bool, len(pending))
	for _, e := range pending {
		inOutbox[e.Key] = true
	}
	for _, k := range dst1.killed {
		require.True(t, inOutbox[k], "killed batch entry %v acked", k)
	}

	// Second archiver, with ClickHouse going down and up under it.
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	r2 := start(t, archive.New(cfg, s, db, "second", discard(), m.Archive))
	require.Eventually(t, func() bool { return sent.Load() >= writers*batches*batch/3 }, 60*time.Second, 5*time.Millisecond)
	require.NoError(t, own.Halt())
	// Batches fail while it is down; the outbox grows.
	require.Eventually(t, func() bool {
		return value(reg, "parley_archive_batch_failures_total") >= 2
	}, 60*time.Second, 5*time.Millisecond)
	first, err := w.send(ctx, 1)
	require.NoError(t, err)
	_, _, err = s.RecallMessage(ctx, first[0].ConversationID, first[0].Seq,
		storage.NewMessage{ID: "recall-notice", SenderID: w.users[0].ID, Kind: storage.MessageSystem, CreatedAt: time.Now()})
	require.NoError(t, err)
	require.NoError(t, own.Restart())

	wg.Wait()
	close(sendErr)
	for err := range sendErr {
		require.NoError(t, err)
	}
	waitDrained(t, s)
	r2.stop(t)
	require.Equal(t, int64(writers*batches*batch), sent.Load())
	requireArchived(t, w, db)
}

// denySpy refuses lease renewals once deny is set, with a refusal or an
// error, and counts the outbox reads that follow a refused renewal.
type denySpy struct {
	storagetest.ArchiveStore
	deny      atomic.Bool
	withError bool
	denied    atomic.Int64
	reads     atomic.Int64
	// readsAfterDenial counts reads after the first refused renewal.
	readsAfterDenial atomic.Int64
}

func (s *denySpy) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) (bool, error) {
	if s.deny.Load() {
		s.denied.Add(1)
		if s.withError {
			return false, storage.ErrUnavailable
		}
		return false, nil
	}
	return s.ArchiveStore.AcquireLease(ctx, name, holder, ttl)
}

func (s *denySpy) ReadOutbox(ctx context.Context, limit int) ([]storage.OutboxEntry, error) {
	s.reads.Add(1)
	if s.denied.Load() > 0 {
		s.readsAfterDenial.Add(1)
	}
	return s.ArchiveStore.ReadOutbox(ctx, limit)
}

// TestStopsWhenRenewalFails: the moment a renewal is refused (another
// holder) or fails (the store is unreachable), the archiver stops
// archiving and reports it is not the leader; it keeps trying to take
// the lease again.
func TestStopsWhenRenewalFails(t *testing.T) {
	t.Parallel()
	for _, withError := range []bool{false, true} {
		t.Run(map[bool]string{false: "refused", true: "error"}[withError], func(t *testing.T) {
			t.Parallel()
			s := &denySpy{ArchiveStore: openEmbedded(t), withError: withError}
			reg := prometheus.NewRegistry()
			m, err := metrics.New(reg)
			require.NoError(t, err)
			cfg := archive.Config{BatchSize: 10, Interval: 5 * time.Millisecond, LeaseTTL: 300 * time.Millisecond}
			start(t, archive.New(cfg, s, openArchive(t, ch), "node", discard(), m.Archive))
			require.Eventually(t, func() bool { return s.reads.Load() > 0 }, 30*time.Second, 5*time.Millisecond)
			s.deny.Store(true)
			// Three refused attempts: the renewal and two retries.
			require.Eventually(t, func() bool { return s.denied.Load() >= 3 }, 30*time.Second, 5*time.Millisecond)
			require.Zero(t, s.readsAfterDenial.Load(), "archived after losing the lease")
			require.InDelta(t, 0.0, value(reg, "parley_archive_leader"), 0)
		})
	}
}

// TestRunLeavesNoGoroutines: once Run has returned and the store and
// the archive are closed, the goroutines are back to what they were
// before. Not parallel: it counts the process's goroutines.
func TestRunLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	s := openEmbedded(t)
	db := openArchive(t, ch)
	w := newWorld(t, s, 2)
	_, err := w.send(t.Context(), 10)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	r := start(t, archive.New(testConfig(), s, db, "node", discard(), m.Archive))
	require.Eventually(t, func() bool { return value(reg, "parley_archive_messages_total") >= 10 }, 30*time.Second, 5*time.Millisecond)
	r.stop(t)
	r.stop(t) // idempotent
	require.NoError(t, s.Close())
	require.NoError(t, db.Close())
	// A bounded poll from this goroutine: require.Eventually's own
	// goroutines would be counted.
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRecallErasedFromArchiveDisk: with an erase interval, the archiver
// erases a recalled message's earlier state from ClickHouse's disk, not
// only from readers; with none, it leaves the table alone.
func TestRecallErasedFromArchiveDisk(t *testing.T) {
	t.Parallel()
	for _, erase := range []time.Duration{10 * time.Millisecond, 0} {
		t.Run(fmt.Sprint("erase_", erase), func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			s := openEmbedded(t)
			name := ch.NewDatabase(t)
			db, err := clickhouse.Open(ctx, clickhouse.Config{Addrs: []string{ch.Addr()}, Database: name, CallTimeout: 10 * time.Second})
			require.NoError(t, err)
			t.Cleanup(func() { _ = db.Close() })
			w := newWorld(t, s, 1)
			cfg := testConfig()
			cfg.EraseInterval = erase
			start(t, archive.New(cfg, s, db, "node", discard(), nil))
			sent, err := w.send(ctx, 3)
			require.NoError(t, err)
			waitDrained(t, s)
			_, _, err = s.RecallMessage(ctx, sent[1].ConversationID, sent[1].Seq,
				storage.NewMessage{ID: "recall-notice", SenderID: w.users[0].ID, Kind: storage.MessageSystem, CreatedAt: time.Now()})
			require.NoError(t, err)
			waitDrained(t, s)
			withContent := func() string {
				n, err := ch.Query(context.Background(), fmt.Sprintf("SELECT count() FROM %s.messages WHERE conversation_id = '%s' AND seq = %d AND body != ''",
					name, sent[1].ConversationID, sent[1].Seq))
				require.NoError(t, err)
				return strings.TrimSpace(n)
			}
			mutations := func() string {
				n, err := ch.Query(context.Background(), "SELECT count() FROM system.mutations WHERE database = '"+name+"'")
				require.NoError(t, err)
				return strings.TrimSpace(n)
			}
			if erase == 0 {
				require.Equal(t, "0", mutations(), "no erase without an interval")
				return
			}
			require.Eventually(t, func() bool { return withContent() == "0" }, 30*time.Second, 10*time.Millisecond)
			require.NotEqual(t, "0", mutations())
		})
	}
}
