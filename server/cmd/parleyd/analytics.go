package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

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
// them: ClickHouse when analytics.clickhouse.addrs is set, else the
// embedded store; a postgres store without ClickHouse has no analytics.
// With analytics.enabled it starts the event writer, which the caller
// stops with stop after the last event was recorded (after the streams
// closed and the engine stopped) and before the store closes.
func openAnalytics(ctx context.Context, cfg config.Config, store storage.Store, node string, reg prometheus.Registerer, logger *slog.Logger) (*analyticsParts, error) {
	first, ok := store.(server.FirstUserStore)
	if !ok {
		return nil, errors.New("analytics: the store does not know its first user")
	}
	a := &analyticsParts{admin: &server.AdminDeps{FirstUser: first, Usernames: cfg.Admin.Users}, stop: func() {}}
	var (
		sink analytics.Writer
		db   *clickhouse.DB
	)
	if len(cfg.Analytics.ClickHouse.Addrs) > 0 {
		var err error
		if db, err = clickhouse.Open(ctx, cfg.Analytics.ClickHouse); err != nil {
			return nil, fmt.Errorf("analytics: %w", err)
		}
		a.admin.Analytics, sink = db, db
		a.stop = func() { _ = db.Close() }
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
		if err := w.Run(runCtx); err != nil {
			logger.Warn("analytics: final flush", "err", err)
		}
	}()
	closeDB := a.stop
	a.writer = w
	a.stop = sync.OnceFunc(func() {
		cancel()
		<-done
		closeDB()
	})
	return a, nil
}
