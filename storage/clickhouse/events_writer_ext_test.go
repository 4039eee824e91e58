package clickhouse_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// day0 is midnight UTC of the day the writer tests record from.
var day0 = time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)

// startWriter makes an EventWriter on db flushing on ticks (never, when
// nil) and runs it until the test ends; stop cancels Run and returns its
// error.
func startWriter(t *testing.T, db *clickhouse.DB, cfg clickhouse.EventWriterConfig, ticks chan time.Time,
	wrap func(context.Context, []clickhouse.Event, func(context.Context, []clickhouse.Event) error) error,
) (w *clickhouse.EventWriter, stop func() error) {
	t.Helper()
	w, err := clickhouse.NewEventWriter(db, cfg)
	require.NoError(t, err)
	clickhouse.SetTicks(w, ticks) // a nil channel never ticks
	if wrap != nil {
		clickhouse.WrapWrite(w, wrap)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return w, stop
}

// recordN records n message_sent events one second apart from day0.
func recordN(w *clickhouse.EventWriter, n int) {
	for i := range n {
		w.Record(clickhouse.Event{Kind: clickhouse.EventMessageSent, At: day0.Add(time.Duration(i) * time.Second), UserID: "alice", ConversationID: "c1", Seq: uint64(i + 1)})
	}
}

// eventCounts are the events table's physical rows, its rows after FINAL
// and its distinct event IDs, read through the HTTP interface.
func eventCounts(t *testing.T, srv *realsvc.ClickHouse, db string) (raw, final, ids int) {
	t.Helper()
	out, err := srv.Query(context.Background(), fmt.Sprintf(
		"SELECT (SELECT count() FROM %[1]s.events), (SELECT count() FROM %[1]s.events FINAL), (SELECT uniqExact(event_id) FROM %[1]s.events)", db))
	require.NoError(t, err)
	f := strings.Fields(out)
	require.Len(t, f, 3, out)
	n := make([]int, 3)
	for i := range f {
		n[i], err = strconv.Atoi(f[i])
		require.NoError(t, err)
	}
	return n[0], n[1], n[2]
}

func TestEventWriter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("flushes_full_batches", func(t *testing.T) {
		t.Parallel()
		db, name := newDB(t)
		w, _ := startWriter(t, db, clickhouse.EventWriterConfig{BatchSize: 10, BufferSize: 100}, nil, nil)
		recordN(w, 25)
		require.Eventually(t, func() bool { return w.Stats().Written == 20 }, 10*time.Second, 5*time.Millisecond)
		require.Equal(t, clickhouse.EventWriterStats{Written: 20, Buffered: 5}, w.Stats(), "a partial batch waits for the interval")
		_, final, _ := eventCounts(t, server, name)
		require.Equal(t, 20, final)
	})

	t.Run("flushes_on_interval", func(t *testing.T) {
		t.Parallel()
		db, name := newDB(t)
		ticks := make(chan time.Time)
		w, _ := startWriter(t, db, clickhouse.EventWriterConfig{BatchSize: 1000}, ticks, nil)
		recordN(w, 7)
		require.Equal(t, 7, w.Stats().Buffered)
		ticks <- time.Now()
		require.Eventually(t, func() bool { return w.Stats().Written == 7 }, 10*time.Second, 5*time.Millisecond)
		_, final, _ := eventCounts(t, server, name)
		require.Equal(t, 7, final)
	})

	t.Run("final_flush_when_ctx_ends", func(t *testing.T) {
		t.Parallel()
		db, name := newDB(t)
		w, stop := startWriter(t, db, clickhouse.EventWriterConfig{BatchSize: 1000, Node: "n7"}, nil, nil)
		recordN(w, 7)
		require.NoError(t, stop())
		require.Equal(t, clickhouse.EventWriterStats{Written: 7}, w.Stats())
		_, final, _ := eventCounts(t, server, name)
		require.Equal(t, 7, final)
		nodes, err := server.Query(ctx, "SELECT groupUniqArray(node) FROM "+name+".events")
		require.NoError(t, err)
		require.Equal(t, "['n7']", nodes, "Record stamps the configured node")

		w.Record(clickhouse.Event{Kind: clickhouse.EventMessageSent})
		require.EqualValues(t, 1, w.Stats().Dropped, "after Run returned, Record drops")
		require.ErrorIs(t, w.Flush(ctx), clickhouse.ErrWriterStopped)
		require.ErrorContains(t, w.Run(ctx), "Run called twice")
	})

	t.Run("flush_on_demand", func(t *testing.T) {
		t.Parallel()
		db, _ := newDB(t)
		w, _ := startWriter(t, db, clickhouse.EventWriterConfig{BatchSize: 1000}, nil, nil)
		recordN(w, 3)
		require.NoError(t, w.Flush(ctx))
		require.Equal(t, clickhouse.EventWriterStats{Written: 3}, w.Stats())
		require.NoError(t, w.Flush(ctx), "nothing to flush")
	})

	t.Run("bounded_without_run", func(t *testing.T) {
		t.Parallel()
		db, _ := newDB(t)
		w, err := clickhouse.NewEventWriter(db, clickhouse.EventWriterConfig{BatchSize: 5, BufferSize: 10})
		require.NoError(t, err)
		recordN(w, 15)
		w.Record(clickhouse.Event{Kind: 42}) // invalid: dropped
		require.Equal(t, clickhouse.EventWriterStats{Dropped: 6, Buffered: 10}, w.Stats())
	})

	t.Run("config_checked", func(t *testing.T) {
		t.Parallel()
		db, _ := newDB(t)
		_, err := clickhouse.NewEventWriter(db, clickhouse.EventWriterConfig{BatchSize: 10, BufferSize: 5})
		require.ErrorContains(t, err, "BufferSize 5 is less than BatchSize 10")
		_, err = clickhouse.NewEventWriter(db, clickhouse.EventWriterConfig{FlushInterval: -time.Second})
		require.ErrorContains(t, err, "FlushInterval is negative")
	})

	t.Run("retry_after_lost_reply_writes_once", func(t *testing.T) {
		t.Parallel()
		// The first insert lands but its caller hears a timeout, as when
		// the reply is lost: the writer retries the same batch, and the
		// table holds two copies that read as one.
		db, name := newDB(t)
		var mu sync.Mutex
		calls := 0
		lose := func(ctx context.Context, batch []clickhouse.Event, write func(context.Context, []clickhouse.Event) error) error {
			err := write(ctx, batch)
			mu.Lock()
			defer mu.Unlock()
			calls++
			if calls == 1 && err == nil {
				return fmt.Errorf("lost reply: %w: %w", storage.ErrUnavailable, context.DeadlineExceeded)
			}
			return err
		}
		w, _ := startWriter(t, db, clickhouse.EventWriterConfig{BatchSize: 1000}, nil, lose)
		recordN(w, 50)
		require.ErrorIs(t, w.Flush(ctx), storage.ErrUnavailable)
		require.Equal(t, clickhouse.EventWriterStats{FailedFlushes: 1, Buffered: 50}, w.Stats())
		require.NoError(t, w.Flush(ctx))
		require.Equal(t, clickhouse.EventWriterStats{Written: 50, FailedFlushes: 1}, w.Stats())
		raw, final, ids := eventCounts(t, server, name)
		require.Equal(t, 100, raw, "the batch landed twice")
		require.Equal(t, 50, final)
		require.Equal(t, 50, ids, "the retry carried the same IDs")
		got, err := db.MessageVolume(ctx, day0, day0.Add(time.Hour), clickhouse.BucketHour)
		require.NoError(t, err)
		require.Equal(t, []clickhouse.Count{{Start: day0, Count: 50}}, got)
	})
}

// TestEventWriterOutage halts the server under the writer: Record keeps
// returning at once, the buffer stays within BufferSize and counts what
// it drops, and after the restart the buffered events arrive once.
func TestEventWriterOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := realsvc.StartClickHouseTB(t)
	name := srv.NewDatabase(t)
	cfg := testConfig(srv, name)
	cfg.DialTimeout, cfg.CallTimeout = time.Second, 2*time.Second
	db := open(t, cfg)
	const bufferSize = 200
	// hold, when set, keeps the writer's next insert in flight until it
	// is closed; entered says an insert is being held.
	var hold atomic.Pointer[chan struct{}]
	entered := make(chan struct{}, 1)
	wrap := func(ctx context.Context, batch []clickhouse.Event, write func(context.Context, []clickhouse.Event) error) error {
		if h := hold.Load(); h != nil {
			select {
			case entered <- struct{}{}:
			default:
			}
			<-*h
		}
		return write(ctx, batch)
	}
	w, stop := startWriter(t, db, clickhouse.EventWriterConfig{
		BatchSize: 50, BufferSize: bufferSize, WriteTimeout: 2 * time.Second,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
	}, nil, wrap)

	recordN(w, 50)
	require.Eventually(t, func() bool { return w.Stats().Written == 50 }, 10*time.Second, 5*time.Millisecond)

	require.NoError(t, srv.Halt())
	recordN(w, 30)
	require.ErrorIs(t, w.Flush(ctx), storage.ErrUnavailable)
	require.EqualValues(t, 1, w.Stats().FailedFlushes)

	// 400 more while the server is down and the writer's retry of the
	// failed batch is held in flight: Record never waits for an insert.
	release := make(chan struct{})
	hold.Store(&release)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the writer never retried the failed batch")
	}
	recorded := make(chan struct{})
	var overCap atomic.Int64
	go func() {
		defer close(recorded)
		for i := range 400 {
			w.Record(clickhouse.Event{Kind: clickhouse.EventConnectionOpened, At: day0.Add(time.Duration(i) * time.Millisecond), UserID: "bob"})
			if w.Stats().Buffered > bufferSize {
				overCap.Add(1)
			}
		}
	}()
	select {
	case <-recorded:
	case <-time.After(30 * time.Second):
		t.Fatal("Record waited for an insert in flight")
	}
	require.Zero(t, overCap.Load(), "Buffered exceeded BufferSize")
	st := w.Stats()
	require.Equal(t, bufferSize, st.Buffered)
	require.EqualValues(t, 30+400-bufferSize, st.Dropped)
	require.EqualValues(t, 50, st.Written)
	hold.Store(nil)
	close(release)

	require.NoError(t, srv.Restart())
	// The driver finds its pooled connections dead on first use: poll.
	require.Eventually(t, func() bool { return w.Flush(ctx) == nil }, 30*time.Second, 20*time.Millisecond)
	st = w.Stats()
	require.Equal(t, 0, st.Buffered)
	require.EqualValues(t, 50+bufferSize, st.Written)
	raw, final, ids := eventCounts(t, srv, name)
	require.Equal(t, 50+bufferSize, final, "every buffered event arrived")
	require.Equal(t, final, ids, "and once")
	require.GreaterOrEqual(t, raw, final)
	require.NoError(t, stop())
}

// BenchmarkEventWriter records b.N events and flushes them through a
// writer with batches of 10,000, reporting events/s end to end.
//
//	go test -run '^$' -bench EventWriter -benchtime 1000000x ./storage/clickhouse/
func BenchmarkEventWriter(b *testing.B) {
	db, err := openTB(b, server.NewDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	w, err := clickhouse.NewEventWriter(db, clickhouse.EventWriterConfig{BatchSize: 10_000, BufferSize: max(b.N, 10_000)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	b.ResetTimer()
	for i := range b.N {
		w.Record(clickhouse.Event{Kind: clickhouse.EventMessageDelivered, At: day0.Add(time.Duration(i) * time.Millisecond),
			UserID: "bob", DeviceID: "d1", ConversationID: "c1", Seq: uint64(i + 1), Latency: 25 * time.Millisecond})
	}
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	if st := w.Stats(); st.Written != uint64(b.N) || st.Dropped != 0 {
		b.Fatalf("stats %+v, want %d written", st, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
