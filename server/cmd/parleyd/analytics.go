package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/parley-im/parley/server"
	"github.com/parley-im/parley/server/config"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/analytics"
	"github.com/parley-im/parley/storage/clickhouse"
)

// analyticsParts are the AdminService's backends and the event writer
// that feeds them.
type analyticsParts struct {
	admin *server.AdminDeps
	// writer batches the events; nil when none are recorded.
	writer *clickhouse.EventWriter
	// stop ends the writer's Run (after its final flush) and closes
	// ClickHouse; idempotent.
	stop func()
}

// recorder is what the server records stream events into: nil (not a
// nil *EventWriter) when no events are recorded.
func (a *analyticsParts) recorder() server.EventRecorder {
	if a.writer == nil {
		return nil
	}
	return a.writer
}

// openAnalytics picks where events go and where the AdminService reads
// them: ClickHouse when analytics.clickhouse.addrs is set (else
// archive.clickhouse when the archive is enabled), else the embedded
// store; a postgres store without ClickHouse has no analytics. ClickHouse
// is opened in the background, retrying, so that an outage does not keep
// parleyd from serving: until it answers, queries are Unavailable and the
// writer buffers (then drops and counts) events. With analytics.enabled
// it starts the event writer, which the caller stops with stop after the
// last event was recorded (after the streams closed and the engine
// stopped) and before the store closes.
func openAnalytics(ctx context.Context, cfg config.Config, store storage.Store, node string, reg prometheus.Registerer, logger *slog.Logger) (*analyticsParts, error) {
	first, ok := store.(server.FirstUserStore)
	if !ok {
		return nil, errors.New("analytics: the store does not know its first user")
	}
	a := &analyticsParts{admin: &server.AdminDeps{FirstUser: first, Usernames: cfg.Admin.Users}, stop: func() {}}
	chCfg := cfg.Analytics.ClickHouse
	if len(chCfg.Addrs) == 0 && cfg.Archive.Enabled {
		chCfg = cfg.Archive.ClickHouse
	}
	var sink analytics.Writer
	if len(chCfg.Addrs) > 0 {
		db := openLazy(ctx, chCfg, logger)
		a.admin.Analytics, sink = db, db
		a.stop = sync.OnceFunc(db.close)
	} else if rw, ok := store.(interface {
		analytics.Reader
		analytics.Writer
	}); ok {
		a.admin.Analytics, sink = rw, rw
	}
	if !cfg.Analytics.Enabled || sink == nil {
		return a, nil
	}
	wcfg := cfg.Analytics.Writer
	if wcfg.Node == "" {
		wcfg.Node = node
	}
	wcfg.Logger = logger
	w, err := clickhouse.NewEventWriter(sink, wcfg)
	if err != nil {
		a.stop()
		return nil, fmt.Errorf("analytics: %w", err)
	}
	if err := metrics.WatchAnalytics(reg, func() metrics.AnalyticsStats {
		s := w.Stats()
		return metrics.AnalyticsStats{Written: s.Written, Dropped: s.Dropped, FailedFlushes: s.FailedFlushes, Buffered: s.Buffered}
	}); err != nil {
		a.stop()
		return nil, fmt.Errorf("analytics: metrics: %w", err)
	}
	// Not ctx: the writer outlives the signal that starts the shutdown,
	// to record the streams' closes; stop ends it.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Before the writer writes anything of this run: then every
		// connection event of this node in the store is a previous run's.
		// Meanwhile Record buffers (and, past BufferSize, drops) as it does
		// while the store is down.
		if c, ok := sink.(analytics.ConnectionCounter); ok {
			closeLeftOpen(runCtx, c, sink, wcfg.Node, logger)
		}
		if err := w.Run(runCtx); err != nil {
			logger.Warn("analytics: final flush", "err", err)
		}
	}()
	var jobs sync.WaitGroup
	if p, ok := sink.(analytics.Pruner); ok && cfg.Analytics.Retention > 0 {
		jobs.Go(func() { pruneEvents(runCtx, p, cfg.Analytics.Retention, logger) })
	}
	closeDB := a.stop
	a.writer = w
	a.stop = sync.OnceFunc(func() {
		cancel()
		<-done
		jobs.Wait()
		closeDB()
	})
	return a, nil
}

// closeLeftOpen records, once, the close of every connection a previous
// run of this node opened and never recorded closing (it crashed):
// otherwise the open-connections series would count them for ever. It
// runs before this run's writer writes anything, so every connection
// event of node in the store is a previous run's. It retries until the
// events store answers or ctx ends; each attempt counts again, closes it
// already wrote included, so a failed attempt's partial writes are not
// repeated.
func closeLeftOpen(ctx context.Context, c analytics.ConnectionCounter, sink analytics.Writer, node string, logger *slog.Logger) {
	backoff := time.Second
	for {
		n, err := closeLeftOpenOnce(ctx, c, sink, node, time.Now())
		if err == nil {
			if n > 0 {
				logger.Info("analytics: recorded the close of connections a previous run of this node left open",
					"connections", n, "node", node)
			}
			return
		}
		if ctx.Err() != nil {
			return
		}
		logger.Warn("analytics: connections left open by a previous run not closed yet; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// closeLeftOpenOnce is one attempt of closeLeftOpen: it counts node's
// open connections (every event is older than now, a previous run's) and
// records their closes at now. It returns how many.
func closeLeftOpenOnce(ctx context.Context, c analytics.ConnectionCounter, sink analytics.Writer, node string, now time.Time) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// A day ahead covers a previous run whose clock was ahead of ours.
	n, err := c.OpenConnections(cctx, node, now.Add(24*time.Hour))
	if err != nil || n == 0 {
		return 0, err
	}
	const batch = 10_000
	events := make([]analytics.Event, 0, min(n, batch))
	for i := range n {
		events = append(events, analytics.Event{ID: uuid.New(), Kind: analytics.EventConnectionClosed, At: now, Node: node})
		if len(events) == batch || i == n-1 {
			if err := sink.WriteEvents(cctx, events); err != nil {
				return 0, err
			}
			events = events[:0]
		}
	}
	return n, nil
}

// pruneEvery is how often events older than analytics.retention are
// removed (once at the start, then on this period).
const pruneEvery = time.Hour

// pruneEvents removes events older than retention now and every
// pruneEvery until ctx ends. Every process does it: it is idempotent, and
// a failure (ClickHouse down) is only logged, for the next round to
// repeat.
func pruneEvents(ctx context.Context, p analytics.Pruner, retention time.Duration, logger *slog.Logger) {
	t := time.NewTicker(pruneEvery)
	defer t.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, pruneEvery/2)
		err := p.PruneEvents(cctx, time.Now().Add(-retention))
		cancel()
		if err != nil && ctx.Err() == nil {
			logger.Warn("analytics: pruning old events failed; retrying in an hour", "err", err, "retention", retention)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lazyClickHouse is a ClickHouse opened in the background: until it
// answers, every call fails with storage.ErrUnavailable (the AdminService
// and archived history say Unavailable; the event writer and the archiver
// keep their batch and retry).
type lazyClickHouse struct {
	db     atomic.Pointer[clickhouse.DB]
	cancel context.CancelFunc
	done   chan struct{}
}

// openLazy starts opening cfg's ClickHouse; close stops trying and closes
// it.
func openLazy(ctx context.Context, cfg clickhouse.Config, logger *slog.Logger) *lazyClickHouse {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l := &lazyClickHouse{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(l.done)
		// openArchive retries with backoff until ClickHouse answers or
		// runCtx ends (nil).
		if db := openArchive(runCtx, cfg, logger.With("backend", "clickhouse")); db != nil {
			l.db.Store(db)
		}
	}()
	return l
}

// close stops opening and closes the DB, if open, after the last use.
// A second call waits for nothing and closes nothing more.
func (l *lazyClickHouse) close() {
	l.cancel()
	<-l.done
	if db := l.db.Load(); db != nil {
		_ = db.Close()
	}
}

var errNotConnected = fmt.Errorf("clickhouse: not connected yet: %w", storage.ErrUnavailable)

func (l *lazyClickHouse) get() (*clickhouse.DB, error) {
	if db := l.db.Load(); db != nil {
		return db, nil
	}
	return nil, errNotConnected
}

// withDB runs f on the DB once it is open; until then it fails as
// unavailable.
func withDB[T any](l *lazyClickHouse, f func(*clickhouse.DB) (T, error)) (T, error) {
	db, err := l.get()
	if err != nil {
		var zero T
		return zero, err
	}
	return f(db)
}

// do is withDB for the calls that return only an error.
func (l *lazyClickHouse) do(f func(*clickhouse.DB) error) error {
	_, err := withDB(l, func(db *clickhouse.DB) (struct{}, error) { return struct{}{}, f(db) })
	return err
}

func (l *lazyClickHouse) OpenConnections(ctx context.Context, node string, before time.Time) (int64, error) {
	return withDB(l, func(db *clickhouse.DB) (int64, error) { return db.OpenConnections(ctx, node, before) })
}

func (l *lazyClickHouse) PruneEvents(ctx context.Context, cutoff time.Time) error {
	return l.do(func(db *clickhouse.DB) error { return db.PruneEvents(ctx, cutoff) })
}

func (l *lazyClickHouse) WriteEvents(ctx context.Context, events []analytics.Event) error {
	return l.do(func(db *clickhouse.DB) error { return db.WriteEvents(ctx, events) })
}

func (l *lazyClickHouse) MessageVolume(ctx context.Context, from, to time.Time, b analytics.Bucket) ([]analytics.Count, error) {
	return withDB(l, func(db *clickhouse.DB) ([]analytics.Count, error) { return db.MessageVolume(ctx, from, to, b) })
}

func (l *lazyClickHouse) DailyActiveUsers(ctx context.Context, from, to time.Time) ([]analytics.ActiveUsers, error) {
	return withDB(l, func(db *clickhouse.DB) ([]analytics.ActiveUsers, error) { return db.DailyActiveUsers(ctx, from, to) })
}

func (l *lazyClickHouse) MonthlyActiveUsers(ctx context.Context, from, to time.Time) ([]analytics.ActiveUsers, error) {
	return withDB(l, func(db *clickhouse.DB) ([]analytics.ActiveUsers, error) { return db.MonthlyActiveUsers(ctx, from, to) })
}

func (l *lazyClickHouse) Latency(ctx context.Context, from, to time.Time) ([]analytics.LatencyPercentiles, error) {
	return withDB(l, func(db *clickhouse.DB) ([]analytics.LatencyPercentiles, error) { return db.Latency(ctx, from, to) })
}

func (l *lazyClickHouse) BusiestConversations(ctx context.Context, from, to time.Time, n int) ([]analytics.ConversationVolume, error) {
	return withDB(l, func(db *clickhouse.DB) ([]analytics.ConversationVolume, error) {
		return db.BusiestConversations(ctx, from, to, n)
	})
}

func (l *lazyClickHouse) ConnectionsOverTime(ctx context.Context, from, to time.Time, b analytics.Bucket) ([]analytics.Connections, error) {
	return withDB(l, func(db *clickhouse.DB) ([]analytics.Connections, error) {
		return db.ConnectionsOverTime(ctx, from, to, b)
	})
}
