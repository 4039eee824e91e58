package archive_test

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/archive"
)

// BenchmarkArchive measures the archiver's throughput: an outbox
// pre-filled with PARLEY_ARCHIVE_BENCH_N messages (default 100,000, over
// 100 conversations) drained into ClickHouse with the default batch size;
// it reports messages/s. Filling the outbox is not timed.
//
//	go test -run '^$' -bench BenchmarkArchive -benchtime 1x ./server/archive/
func BenchmarkArchive(b *testing.B) {
	n := 100_000
	if v := os.Getenv("PARLEY_ARCHIVE_BENCH_N"); v != "" {
		var err error
		n, err = strconv.Atoi(v)
		require.NoError(b, err)
	}
	for _, be := range backends {
		b.Run(be.name, func(b *testing.B) {
			var total time.Duration
			for range b.N {
				b.StopTimer()
				s := be.open(b)
				db := openArchive(b, ch)
				w := newWorld(b, s, 100)
				// Enabled (and its backfill done) before the messages, as in a
				// store archived from its first day: the triggers queue them.
				require.NoError(b, s.EnableArchive(context.Background()))
				for done := false; !done; {
					var err error
					_, done, err = s.BackfillOutbox(context.Background(), 1000)
					require.NoError(b, err)
				}
				for sent := 0; sent < n; sent += 1000 {
					_, err := w.send(context.Background(), min(1000, n-sent))
					require.NoError(b, err)
				}
				cfg := archive.DefaultConfig()
				b.StartTimer()
				began := time.Now()
				r := start(b, archive.New(cfg, s, db, "bench", discard(), nil))
				waitDrained(b, s)
				total += time.Since(began)
				b.StopTimer()
				r.stop(b)
				count, err := db.Count(context.Background())
				require.NoError(b, err)
				require.GreaterOrEqual(b, count, uint64(n))
			}
			b.ReportMetric(float64(n*b.N)/total.Seconds(), "msgs/s")
		})
	}
}
