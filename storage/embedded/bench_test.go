package embedded_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/storagetest"
)

// BenchmarkAppendMessages measures the send hot path: batches as the
// server's group commit forms them, spread over direct conversations, each
// message with an idempotency key and a 100-byte body. msgs/s is the
// figure to watch.
//
//	go test -run '^$' -bench AppendMessages -benchmem ./storage/embedded/
func BenchmarkAppendMessages(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			benchAppend(b, batch, 64)
		})
	}
}

func benchAppend(b *testing.B, batch, conversations int) {
	ctx := context.Background()
	s := open(b, filepath.Join(b.TempDir(), "parley.db"))
	type pair struct{ conv, sender string }
	pairs := make([]pair, conversations)
	for i := range pairs {
		x, y := user(b, s, fmt.Sprintf("x%d", i)), user(b, s, fmt.Sprintf("y%d", i))
		c, _, err := s.GetOrCreateDirect(ctx, fmt.Sprintf("c%d", i), x.ID, y.ID, time.Now())
		require.NoError(b, err)
		pairs[i] = pair{c.ID, x.ID}
	}
	body := make([]byte, 100)
	msgs := make([]storage.NewMessage, batch)
	now := time.Now()
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		for i := range msgs {
			p := pairs[n%len(pairs)]
			// The server's ids are UUIDv7 (time-ordered); a counter in
			// the same shape costs the benchmark nothing.
			id := fmt.Sprintf("0198f2a4-0000-7000-8000-%012d", n)
			msgs[i] = storage.NewMessage{
				ID: id, ConversationID: p.conv, SenderID: p.sender, SenderDeviceID: "d",
				ClientMsgID: fmt.Sprintf("c%d", n), Kind: storage.MessageText, Body: body, CreatedAt: now,
			}
			n++
		}
		res, err := s.AppendMessages(ctx, msgs)
		if err != nil {
			b.Fatal(err)
		}
		if res[0].Err != nil || res[0].Duplicate {
			b.Fatalf("unexpected result %+v", res[0])
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/msg")
}

// BenchmarkSearch measures one search page over 100,000 messages (see
// storagetest.BenchSearch).
//
//	go test -run '^$' -bench Search ./storage/embedded/
func BenchmarkSearch(b *testing.B) {
	storagetest.BenchSearch(b, open(b, filepath.Join(b.TempDir(), "parley.db")), 100_000, nil)
}

// BenchmarkTrim measures how fast the store sheds archived history (see
// storagetest.BenchTrim) over 100,000 messages, or PARLEY_TRIM_BENCH_N.
//
//	go test -run '^$' -bench Trim -benchtime 1x ./storage/embedded/
func BenchmarkTrim(b *testing.B) {
	storagetest.BenchTrim(b, open(b, filepath.Join(b.TempDir(), "parley.db")), storagetest.BenchSize(b, "PARLEY_TRIM_BENCH_N", 100_000))
}
