package clickhouse_test

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/analytics"
	"github.com/parley-im/parley/storage/analytics/analyticstest"
)

// TestAnalyticsConformance runs the cases the embedded store passes too.
func TestAnalyticsConformance(t *testing.T) {
	t.Parallel()
	analyticstest.Run(t, func(t *testing.T) analyticstest.Backend {
		db, _ := newDB(t)
		return db
	})
}

// TestPruneEventsKeepsWholeMonths: a cutoff inside a month keeps that
// month's events (partitions are dropped whole) and the months after it.
func TestPruneEventsKeepsWholeMonths(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, name := newDB(t)
	at := time.Date(2026, 3, 3, 0, 0, 0, 0, time.UTC)
	require.NoError(t, db.WriteEvents(ctx, []analytics.Event{
		{ID: uuid.New(), Kind: analytics.EventMessageSent, At: at, UserID: "u", Node: "n"},
		{ID: uuid.New(), Kind: analytics.EventMessageSent, At: at.AddDate(0, 1, 0), UserID: "u", Node: "n"},
	}))
	require.NoError(t, db.PruneEvents(ctx, at.AddDate(0, 0, 10)))
	n, err := server.Query(ctx, "SELECT count() FROM "+name+".events")
	require.NoError(t, err)
	require.Equal(t, "2", strings.TrimSpace(n))
	require.NoError(t, db.PruneEvents(ctx, time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)))
	n, err = server.Query(ctx, "SELECT count() FROM "+name+".events")
	require.NoError(t, err)
	require.Equal(t, "1", strings.TrimSpace(n), "March is gone, April stays")
}
