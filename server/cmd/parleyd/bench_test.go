package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// BenchmarkSendDeliver measures the whole path on the embedded store: 100
// pairs of devices, each on its own HTTP/2 connection and bidirectional
// stream, each sender keeping up to sendWindow sends awaiting their
// acknowledgement; a message counts once its peer's stream has delivered
// it. Reports delivered msgs/s and send→deliver latency.
//
//	go test ./server/cmd/parleyd -run '^$' -bench 'SendDeliver/store=embedded' -benchtime 50000x
func BenchmarkSendDeliver(b *testing.B) {
	for _, store := range []string{"embedded", "postgres"} {
		for _, window := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("store=%s/window=%d", store, window), func(b *testing.B) {
				var args []string
				if store == "postgres" {
					args = []string{"-store", postgresDSN(b)}
				}
				ts := startServerEnv(b, benchEnv(), args...)
				benchSendDeliver(b, window, ts.url, 0, ts.url, 0, 1)
			})
		}
	}
}

// BenchmarkSendDeliverCluster is BenchmarkSendDeliver across two shards,
// two parleyd instances (in this process) on one PostgreSQL and one
// Redis: every sender is on shard 0 and every receiver on shard 1, so
// every message is committed, published to Redis and read back by the
// other process before it is delivered.
//
//	go test ./server/cmd/parleyd -run '^$' -bench 'SendDeliverCluster' -benchtime 50000x
func BenchmarkSendDeliverCluster(b *testing.B) {
	for _, window := range []int{8, 32} {
		b.Run(fmt.Sprintf("window=%d", window), func(b *testing.B) {
			servers := startCluster(b, benchEnv(), 2)
			benchSendDeliver(b, window, servers[0].url, 0, servers[1].url, 1, 2)
		})
	}
}

// benchEnv turns off what would get in a benchmark's way: registration
// speed is not what it measures, and 200 devices signing up from one
// address would trip the abuse limits.
func benchEnv() map[string]string {
	return map[string]string{
		"PARLEY_AUTH_ARGON2_MEMORY_KIB":     "1024",
		"PARLEY_AUTH_ADDRESS_ATTEMPT_BURST": "0",
		"PARLEY_CHAT_SEND_RATE":             "0",
	}
}

// benchSendDeliver runs 100 sender→receiver pairs; senders connect to
// senderURL and receivers to receiverURL (in a cluster, a process of
// their shard).
func benchSendDeliver(b *testing.B, sendWindow int, senderURL string, senderShard int, receiverURL string, receiverShard, shards int) {
	const pairs = 100
	type pair struct {
		from, to *user
		conv     string
	}
	froms := registerOnShard(b, senderURL, "sender", pairs, senderShard, shards)
	tos := registerOnShard(b, receiverURL, "receiver", pairs, receiverShard, shards)
	ps := make([]pair, pairs)
	for i := range ps {
		from, to := froms[i], tos[i]
		c, err := from.convs.CreateDirect(b.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: to.id}})
		require.NoError(b, err)
		ps[i] = pair{from, to, c.GetConversation().GetId()}
	}
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()

	perPair := max(b.N/pairs, 1)
	latencies := make([][]time.Duration, pairs)
	var wg sync.WaitGroup
	ready := make(chan struct{})
	var setup sync.WaitGroup
	setup.Add(2 * pairs)
	errs := make(chan error, 4*pairs)
	finished := make(chan struct{}, pairs)
	for i, p := range ps {
		rs, err := p.to.chat.Connect(ctx)
		require.NoError(b, err)
		ss, err := p.from.chat.Connect(ctx)
		require.NoError(b, err)
		wg.Go(func() { // receiver
			defer func() { _ = rs.CloseSend() }()
			synced := false
			got := 0
			lat := make([]time.Duration, 0, perPair)
			_ = rs.SendHeaders()
			for got < perPair {
				res, err := rs.Receive()
				if err != nil {
					errs <- fmt.Errorf("receiver %d: %w", i, err)
					return
				}
				f := res.GetFrame()
				if f.GetSyncComplete() != nil && !synced {
					synced = true
					setup.Done()
				}
				m := f.GetMessage()
				if m == nil {
					continue
				}
				sent, _ := strconv.ParseInt(m.GetContent().GetText(), 10, 64)
				lat = append(lat, time.Since(time.Unix(0, sent)))
				got++
				if got%100 == 0 || got == perPair {
					_ = rs.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ack{Ack: &parleyv1.AckFrame{ConversationId: p.conv, Seq: m.GetSeq()}}}})
				}
			}
			latencies[i] = lat
			finished <- struct{}{}
		})
		wg.Go(func() { // sender: acks are read and dropped
			defer func() { _ = ss.CloseSend() }()
			_ = ss.SendHeaders()
			for {
				res, err := ss.Receive()
				if err != nil {
					return
				}
				if res.GetFrame().GetSyncComplete() != nil {
					break
				}
			}
			setup.Done()
			window := make(chan struct{}, sendWindow)
			go func() {
				for {
					res, err := ss.Receive()
					if err != nil {
						return
					}
					if res.GetFrame().GetSendAck() != nil {
						<-window
					}
				}
			}()
			<-ready
			for n := range perPair {
				select {
				case window <- struct{}{}:
				case <-ctx.Done():
					return
				}
				err := ss.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
					ConversationId: p.conv,
					ClientMsgId:    strconv.Itoa(n),
					Content:        &parleyv1.Content{Body: &parleyv1.Content_Text{Text: strconv.FormatInt(time.Now().UnixNano(), 10)}},
				}}}})
				if err != nil {
					errs <- fmt.Errorf("sender %d: %w", i, err)
					return
				}
			}
		})
	}
	setup.Wait()
	b.ResetTimer()
	start := time.Now()
	close(ready)
	// Receivers finish when everything arrived; then senders are stopped.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	for range pairs {
		select {
		case <-finished:
		case err := <-errs:
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	slices.Sort(all)
	total := pairs * perPair
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "p99_ms")
}
