package redis_test

import (
	"bytes"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/redis"
)

// BenchmarkPublishBatch publishes batches of 1, 64 and 256 entries of 200
// bytes, spread over 4 shards, from one goroutine to the test binary's
// redis-server on loopback, and reports entries/s. Batch 1 is the cost of
// one round trip per entry, as with Publish.
func BenchmarkPublishBatch(b *testing.B) {
	const (
		shards      = 4
		payloadSize = 200
	)
	for _, size := range []int{1, 64, 256} {
		b.Run("entries="+strconv.Itoa(size), func(b *testing.B) {
			cfg := testConfig(server)
			// Every run has its own streams on the shared server: keep each
			// small so repeated runs do not fill Redis's memory. Trimming
			// still happens on every XADD, as in production.
			cfg.StreamMaxLen = 10_000
			r, err := redis.New(b.Context(), cfg)
			require.NoError(b, err)
			b.Cleanup(func() { require.NoError(b, r.Close()) })
			payload := bytes.Repeat([]byte("x"), payloadSize)
			batch := make([]storage.Entry, size)
			for i := range batch {
				batch[i] = storage.Entry{Shard: i % shards, Payload: payload}
			}
			b.ReportAllocs()
			b.SetBytes(int64(size * payloadSize))
			for b.Loop() {
				if err := r.PublishBatch(b.Context(), batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(size*b.N)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}
