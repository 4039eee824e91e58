package redis_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/redis"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
	"github.com/parley-im/parley/storage/storagetest/routingtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	// Both brokers a test opens share one key prefix: two processes of one
	// cluster.
	var mu sync.Mutex
	prefixOf := map[*testing.T]string{}
	t.Run("broker", func(t *testing.T) {
		t.Parallel()
		routingtest.RunBroker(t, func(t *testing.T) storage.Broker {
			mu.Lock()
			prefix, ok := prefixOf[t]
			if !ok {
				prefix = uniquePrefix()
				prefixOf[t] = prefix
			}
			mu.Unlock()
			cfg := testConfig(server)
			cfg.KeyPrefix = prefix
			r, err := redis.New(t.Context(), cfg)
			require.NoError(t, err)
			return r
		})
	})
	t.Run("presence", func(t *testing.T) {
		t.Parallel()
		routingtest.RunPresence(t, func(t *testing.T) storage.PresenceStore {
			return newRedis(t, testConfig(server))
		})
	})
}

// TestBroker covers what is particular to Redis Streams.
func TestBroker(t *testing.T) {
	t.Parallel()

	t.Run("stream_is_trimmed", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(server)
		cfg.StreamMaxLen = 100
		r := newRedis(t, cfg)
		for i := range 2000 {
			require.NoError(t, r.Publish(t.Context(), 1, []byte{byte(i)}))
		}
		n, err := rawClient(t, server).XLen(t.Context(), cfg.KeyPrefix+"shard:1").Result()
		require.NoError(t, err)
		// MAXLEN ~ trims whole macro nodes (100 entries each by default).
		require.LessOrEqual(t, n, int64(300))
		require.GreaterOrEqual(t, n, int64(100))
	})

	t.Run("trimmed_pending_entries_are_skipped", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(server)
		r := newRedis(t, cfg)
		require.NoError(t, r.Join(t.Context(), 1, "p1"))
		publish(t, r, 1, seq("m", 0, 5)...)
		ctx, cancel := context.WithCancel(t.Context())
		require.NoError(t, r.Consume(ctx, 1, "p1", func(context.Context, []byte) { cancel() }))
		// m1..m4 are pending; trim the stream below them.
		require.NoError(t, rawClient(t, server).XTrimMaxLen(t.Context(), cfg.KeyPrefix+"shard:1", 0).Err())
		publish(t, r, 1, "new")
		c := startConsumer(t, r, 1, "p1", nil)
		c.expect(t, "new")
	})

	t.Run("wrong_key_type_is_permanent", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(server)
		r := newRedis(t, cfg)
		require.NoError(t, rawClient(t, server).Set(t.Context(), cfg.KeyPrefix+"shard:1", "x", 0).Err())
		err := r.Consume(t.Context(), 1, "p1", func(context.Context, []byte) {})
		require.Error(t, err)
		require.NotErrorIs(t, err, storage.ErrUnavailable)
		require.Error(t, r.Publish(t.Context(), 1, []byte("x")))
		err = r.PublishBatch(t.Context(), []storage.Entry{{Shard: 2, Payload: []byte("x")}, {Shard: 1, Payload: []byte("x")}})
		require.Error(t, err)
		require.NotErrorIs(t, err, storage.ErrUnavailable)
	})

	t.Run("publish_fails_when_redis_is_down", func(t *testing.T) {
		t.Parallel()
		srv := realsvc.StartRedisTB(t, realsvc.RedisOptions{})
		r := newRedis(t, testConfig(srv))
		publish(t, r, 1, "up")
		require.NoError(t, srv.Stop())
		err := r.Publish(t.Context(), 1, []byte("down"))
		require.ErrorIs(t, err, storage.ErrUnavailable)
		require.ErrorIs(t, r.Join(t.Context(), 1, "p"), storage.ErrUnavailable)
	})

	t.Run("publish_batch_fails_when_redis_is_down", func(t *testing.T) {
		t.Parallel()
		srv := realsvc.StartRedisTB(t, realsvc.RedisOptions{})
		r := newRedis(t, testConfig(srv))
		batch := []storage.Entry{{Shard: 1, Payload: []byte("a")}, {Shard: 2, Payload: []byte("b")}}
		require.NoError(t, r.PublishBatch(t.Context(), batch))
		require.NoError(t, srv.Stop())
		err := r.PublishBatch(t.Context(), batch)
		require.ErrorIs(t, err, storage.ErrUnavailable)
		require.NoError(t, r.PublishBatch(t.Context(), nil), "an empty batch needs no Redis")
	})
}

// TestConsumeSurvivesRedisRestart restarts redis-server under a running
// Consume. With the append-only file the stream and group come back; without
// it Redis comes back empty and Consume recreates the group after the last
// entry it saw. Either way entries published after the restart arrive.
// Entries published while Redis is down are refused by Publish
// (publish_fails_when_redis_is_down), so nothing is published then.
func TestConsumeSurvivesRedisRestart(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		appendOnly bool
	}{
		{name: "append_only", appendOnly: true},
		{name: "without_persistence", appendOnly: false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := realsvc.StartRedisTB(t, realsvc.RedisOptions{AppendOnly: tc.appendOnly})
			r := newRedis(t, testConfig(srv))
			require.NoError(t, r.Join(t.Context(), 1, "p1"))
			c := startConsumer(t, r, 1, "p1", nil)
			publish(t, r, 1, "before")
			c.expect(t, "before")

			require.NoError(t, srv.Restart())

			// The first publish after the restart may still meet a broken
			// pooled connection; go-redis retries it within the call.
			publish(t, r, 1, "after0", "after1")
			if tc.appendOnly {
				c.expect(t, "after0", "after1")
			} else {
				// The recreated group first reports the loss: a nil payload.
				c.expect(t, "", "after0", "after1")
			}
		})
	}
}

// TestClose is not parallel: it counts goroutines.
func TestClose(t *testing.T) {
	t.Run("stops_consume_and_leaks_no_goroutines", func(t *testing.T) {
		base := runtime.NumGoroutine()
		r, err := redis.New(t.Context(), testConfig(server))
		require.NoError(t, err)
		require.NoError(t, r.Join(t.Context(), 1, "p"))

		done := make(chan error, 2)
		for range 2 {
			go func() {
				done <- r.Consume(context.Background(), 1, "p", func(context.Context, []byte) {})
			}()
		}
		publish(t, r, 1, "x")
		require.NoError(t, r.Close())
		for range 2 {
			require.NoError(t, <-done, "Close ends Consume with nil")
		}
		require.NoError(t, r.Close(), "Close is idempotent")
		require.NoError(t, r.Consume(t.Context(), 1, "p", func(context.Context, []byte) {}))
		require.ErrorIs(t, r.Publish(t.Context(), 1, []byte("y")), storage.ErrUnavailable)
		require.ErrorIs(t, r.SetOnline(t.Context(), "u", "d", "n", time.Minute), storage.ErrUnavailable)
		_, err = r.Online(t.Context(), []string{"u"})
		require.ErrorIs(t, err, storage.ErrUnavailable)

		// Eventually runs the condition on a goroutine of its own: +1.
		if !assert.Eventually(t, func() bool { return runtime.NumGoroutine() <= base+1 }, 10*time.Second, 10*time.Millisecond) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
	})

	t.Run("new_fails_when_redis_is_unreachable", func(t *testing.T) {
		srv := realsvc.StartRedisTB(t, realsvc.RedisOptions{})
		cfg := testConfig(srv)
		require.NoError(t, srv.Stop())
		_, err := redis.New(t.Context(), cfg)
		require.ErrorIs(t, err, storage.ErrUnavailable)
		_, err = redis.New(t.Context(), redis.Config{})
		require.Error(t, err)
		require.NotErrorIs(t, err, storage.ErrUnavailable)
	})
}
