package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/storagetest"
)

// BenchmarkAppendMessages measures the send hot path: batches as the
// server's group commit forms them, from one goroutine, spread over 64
// direct conversations, each message with an idempotency key and a
// 100-byte body. msgs/s is the figure to watch. The harness runs
// PostgreSQL with fsync (and synchronous_commit) off, so this is the
// store's CPU and round-trip cost, not the disk's.
//
//	go test -run '^$' -bench AppendMessages -benchmem ./storage/postgres/
func BenchmarkAppendMessages(b *testing.B) {
	for _, batch := range []int{1, 16, 256} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			benchAppend(b, batch, 64, false)
		})
	}
	// One retry of a committed message per batch: the slow path, where
	// the optimistic write fails on the idempotency index and the batch
	// reads the committed keys and writes again.
	b.Run("batch=256/retry=1", func(b *testing.B) {
		benchAppend(b, 256, 64, true)
	})
}

func benchAppend(b *testing.B, batch, conversations int, retry bool) {
	ctx := context.Background()
	s := open(b, pg.NewSchema(b))
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
			id := fmt.Sprintf("0198f2a4-0000-7000-8000-%012d", n)
			msgs[i] = storage.NewMessage{
				ID: id, ConversationID: p.conv, SenderID: p.sender, SenderDeviceID: "d",
				ClientMsgID: fmt.Sprintf("c%d", n), Kind: storage.MessageText, Body: body, CreatedAt: now,
			}
			n++
		}
		if retry && n > batch {
			// The previous batch's second message (its first was a
			// retry too), again.
			k := n - 2*batch + 1
			p := pairs[k%len(pairs)]
			msgs[0].ConversationID, msgs[0].SenderID = p.conv, p.sender
			msgs[0].ClientMsgID = fmt.Sprintf("c%d", k)
		}
		res, err := s.AppendMessages(ctx, msgs)
		if err != nil {
			b.Fatal(err)
		}
		if last := res[len(res)-1]; last.Err != nil || last.Duplicate {
			b.Fatalf("unexpected result %+v", last)
		}
		if retry && n > batch && !res[0].Duplicate {
			b.Fatalf("retry not reported as a duplicate: %+v", res[0])
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/msg")
}

// BenchmarkSearch measures one search page over 100,000 messages (see
// storagetest.BenchSearch), after an ANALYZE such as autovacuum runs on
// a table that grew: without statistics the planner cannot tell a common
// word from a rare one.
//
//	go test -run '^$' -bench Search ./storage/postgres/
func BenchmarkSearch(b *testing.B) {
	dsn := pg.NewSchema(b)
	storagetest.BenchSearch(b, open(b, dsn), 100_000, func() {
		conn, err := pgx.Connect(b.Context(), dsn)
		require.NoError(b, err)
		defer func() { _ = conn.Close(b.Context()) }()
		_, err = conn.Exec(b.Context(), `ANALYZE message_search, messages, members`)
		require.NoError(b, err)
	})
}

// BenchmarkTrim measures how fast the store sheds archived history (see
// storagetest.BenchTrim) over 100,000 messages, or PARLEY_TRIM_BENCH_N.
//
//	go test -run '^$' -bench Trim -benchtime 1x ./storage/postgres/
func BenchmarkTrim(b *testing.B) {
	storagetest.BenchTrim(b, open(b, pg.NewSchema(b)), storagetest.BenchSize(b, "PARLEY_TRIM_BENCH_N", 100_000))
}
