package route_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/postgres"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// BenchmarkPersistAndRoute measures the server side of cluster delivery
// without clients: 100 senders on shard 0's process submit messages to
// its engine (group commit to PostgreSQL, one Redis entry per commit
// batch), and shard 1's process reads them from its stream and hands them
// to its receivers' connections. A message counts once a receiver's
// connection has it. PostgreSQL, Redis and both "processes" (in this one)
// share the machine.
//
//	go test ./server/route -run '^$' -bench PersistAndRoute -benchtime 100000x
func BenchmarkPersistAndRoute(b *testing.B) {
	for _, window := range []int{8, 32} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			benchPersistAndRoute(b, window)
		})
	}
}

func benchPersistAndRoute(b *testing.B, window int) {
	const pairs = 100
	ctx := b.Context()
	pg := realsvc.StartPostgresTB(b)
	st, err := postgres.Open(ctx, postgres.Config{DSN: pg.NewSchema(b)})
	require.NoError(b, err)
	b.Cleanup(func() { _ = st.Close() })
	r := openRedis(b, server)
	a := startNode(b, r, "a", 0, 2)
	recv := startNode(b, r, "b", 1, 2)

	type pair struct{ sender, conv string }
	ps := make([]pair, pairs)
	now := time.Now()
	perPair := max(b.N/pairs, 1)
	var delivered sync.WaitGroup
	for i := range ps {
		s, rcv := userOn(0, 2, fmt.Sprintf("s%d", i)), userOn(1, 2, fmt.Sprintf("r%d", i))
		for _, u := range []string{s, rcv} {
			require.NoError(b, st.CreateUser(ctx, storage.User{ID: u, Username: u, DisplayName: u, PasswordHash: "x", CreatedAt: now}))
		}
		conv, _, err := st.GetOrCreateDirect(ctx, fmt.Sprintf("c%d", i), s, rcv, now)
		require.NoError(b, err)
		ps[i] = pair{s, conv.ID}
		conn := recv.connect(b, rcv, "d-"+rcv)
		delivered.Go(func() {
			for range perPair {
				if _, ok := conn.Next(ctx); !ok {
					b.Error("receiver connection closed")
					return
				}
			}
		})
	}
	eng := engine.New(engine.DefaultConfig(), st, a.cluster, slog.New(slog.DiscardHandler))
	eng.Start()
	b.Cleanup(func() { _ = eng.Close(context.Background()) })

	b.ResetTimer()
	start := time.Now()
	var senders sync.WaitGroup
	for _, p := range ps {
		senders.Go(func() {
			inflight := make(chan func() (engine.SendResult, error), window)
			var acks sync.WaitGroup
			acks.Go(func() {
				for wait := range inflight {
					if res, err := wait(); err != nil || res.Err != nil {
						b.Errorf("send: %v %v", err, res.Err)
					}
				}
			})
			for n := range perPair {
				wait, err := eng.Submit(ctx, storage.NewMessage{
					ID: fmt.Sprintf("%s-%d", p.conv, n), ConversationID: p.conv, SenderID: p.sender, SenderDeviceID: "d-" + p.sender,
					ClientMsgID: fmt.Sprint(n), Kind: storage.MessageText, Body: []byte("a message of some forty bytes or so, ok"), CreatedAt: time.Now(),
				})
				if err != nil {
					b.Error(err)
					break
				}
				inflight <- wait
			}
			close(inflight)
			acks.Wait()
		})
	}
	senders.Wait()
	delivered.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(pairs*perPair)/elapsed.Seconds(), "msgs/s")
}
