package clickhouse

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/parley-im/parley/storage/analytics"
)

var _ analytics.Pruner = (*DB)(nil)

// PruneEvents drops the monthly partitions of events (PARTITION BY
// toYYYYMM(at)) that end at or before cutoff, as analytics.Pruner
// specifies. Dropping a partition is a metadata operation on every
// version, where a TTL (19.6 and later) would delete rows in merges and,
// on current servers, rewrite every part when it is changed; whole months
// are precise enough for analytics.
func (db *DB) PruneEvents(ctx context.Context, cutoff time.Time) error {
	const op = "prune events"
	if db.closed.Load() {
		return errClosed(op)
	}
	var partitions []string
	err := db.query(ctx, op+": list partitions", `SELECT DISTINCT partition FROM system.parts
		WHERE database = currentDatabase() AND table = 'events' AND active`, nil,
		func(scan func(...any) error) error {
			var p string
			if err := scan(&p); err != nil {
				return err
			}
			partitions = append(partitions, p)
			return nil
		})
	if err != nil {
		return err
	}
	for _, p := range partitions {
		month, err := strconv.Atoi(p)
		if err != nil || month < 197001 {
			return fmt.Errorf("clickhouse: %s: partition %q is not a YYYYMM month", op, p)
		}
		end := time.Date(month/100, time.Month(month%100)+1, 1, 0, 0, 0, 0, time.UTC)
		if end.After(cutoff) {
			continue
		}
		// The partition id is the number itself; no placeholder in ALTER.
		if err := db.exec(ctx, op+": drop partition "+p, "ALTER TABLE events DROP PARTITION "+strconv.Itoa(month)); err != nil {
			return err
		}
	}
	return nil
}
