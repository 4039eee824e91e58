package embedded_test

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/analytics"
)

// BenchmarkWriteEvents measures analytics inserts into SQLite: one event
// per transaction (what recording each event directly would cost) against
// batches like the EventWriter's.
func BenchmarkWriteEvents(b *testing.B) {
	for _, batch := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch_%d", batch), func(b *testing.B) {
			s := open(b, filepath.Join(b.TempDir(), "parley.db"))
			at := time.Date(2026, 3, 14, 0, 0, 0, 0, time.UTC)
			events := make([]analytics.Event, batch)
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n += batch {
				for i := range events {
					events[i] = analytics.Event{
						ID: uuid.New(), Kind: analytics.EventMessageDelivered, At: at.Add(time.Duration(n+i) * time.Millisecond),
						UserID: "u", DeviceID: "d", ConversationID: "c", Seq: uint64(n + i), Latency: time.Millisecond,
					}
				}
				require.NoError(b, s.WriteEvents(b.Context(), events))
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
