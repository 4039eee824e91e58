package clickhouse_test

import (
	"context"
	"testing"
)

// BenchmarkWriteMessages writes batches of 10,000 messages (a fresh
// conversation per batch) and reports rows/s.
//
//	go test -run '^$' -bench WriteMessages -benchtime 20x ./storage/clickhouse/
func BenchmarkWriteMessages(b *testing.B) {
	ctx := context.Background()
	name := server.NewDatabase(b)
	db, err := openTB(b, name)
	if err != nil {
		b.Fatal(err)
	}
	const rows = 10_000
	batch := testMessages("bench", 1, rows)
	for i := 0; b.Loop(); i++ {
		for j := range batch {
			batch[j].Seq = uint64(i*rows + j + 1)
		}
		if err := db.WriteMessages(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*rows)/b.Elapsed().Seconds(), "rows/s")
}
