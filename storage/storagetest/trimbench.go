package storagetest

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// BenchTrim measures how fast a store sheds history it has archived
// (storage.HotWindow): n text messages over 1,000 direct conversations,
// all older than the cutoff and none waiting in the outbox, trimmed in
// calls of 5,000 (the archiver's default batch) until nothing is left. It
// reports messages/s. Filling the store is not timed. Backends call it
// from their own benchmarks, once per fresh store:
//
//	go test -run '^$' -bench Trim -benchtime 1x ./storage/embedded/ ./storage/postgres/
func BenchTrim(b *testing.B, s ArchiveStore, n int) {
	ctx := b.Context()
	const convs = 1000
	owner := storage.User{ID: "owner", Username: "owner", PasswordHash: "h", CreatedAt: at(0)}
	require.NoError(b, s.CreateUser(ctx, owner))
	ids := make([]string, convs)
	for i := range ids {
		peer := storage.User{ID: fmt.Sprintf("p%d", i), Username: fmt.Sprintf("p%d", i), PasswordHash: "h", CreatedAt: at(0)}
		require.NoError(b, s.CreateUser(ctx, peer))
		c, _, err := s.GetOrCreateDirect(ctx, fmt.Sprintf("d%d", i), owner.ID, peer.ID, at(0))
		require.NoError(b, err)
		ids[i] = c.ID
	}
	const batch = 1000
	for done := 0; done < n; done += batch {
		msgs := make([]storage.NewMessage, 0, batch)
		for i := done; i < min(done+batch, n); i++ {
			text := fmt.Sprintf("message number %d of the benchmark", i)
			msgs = append(msgs, storage.NewMessage{
				ID: fmt.Sprintf("m%d", i), ConversationID: ids[i%convs], SenderID: owner.ID, SenderDeviceID: "d",
				ClientMsgID: fmt.Sprintf("c%d", i), Kind: storage.MessageText, Body: []byte(text), SearchText: text,
				CreatedAt: at(i / convs),
			})
		}
		_, err := s.AppendMessages(ctx, msgs)
		require.NoError(b, err)
	}
	// Archived in effect: the outbox is switched on (queuing everything)
	// and drained without an archive, as the archiver would leave it.
	enableArchive(b, s)
	for {
		es, err := s.ReadOutbox(ctx, 10_000)
		require.NoError(b, err)
		if len(es) == 0 {
			break
		}
		acks := make([]int64, len(es))
		for i, e := range es {
			acks[i] = e.ID
		}
		require.NoError(b, s.AckOutbox(ctx, acks))
	}
	cutoff := at(n)
	b.ResetTimer()
	began := time.Now()
	total := 0
	for {
		moved, err := s.TrimArchived(ctx, cutoff, 5000)
		require.NoError(b, err)
		total += moved
		if moved < 5000 {
			break
		}
	}
	elapsed := time.Since(began)
	b.StopTimer()
	require.Equal(b, n-convs, total, "everything but each conversation's newest message")
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
}

// BenchSize is the benchmark size in the environment variable env, or def
// when it is unset.
func BenchSize(b *testing.B, env string, def int) int {
	v := os.Getenv(env)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(b, err, "%s", env)
	return n
}
