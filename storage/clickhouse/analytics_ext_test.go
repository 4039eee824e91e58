package clickhouse_test

import (
	"testing"

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
