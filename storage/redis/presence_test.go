package redis_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/redis"
)

// countHook counts what a client sends: single commands, pipelines, and
// the commands inside them.
type countHook struct {
	single, pipelines, pipelined atomic.Int64
}

func (h *countHook) DialHook(next goredis.DialHook) goredis.DialHook { return next }

func (h *countHook) ProcessHook(next goredis.ProcessHook) goredis.ProcessHook {
	return func(ctx context.Context, cmd goredis.Cmder) error {
		h.single.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countHook) ProcessPipelineHook(next goredis.ProcessPipelineHook) goredis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []goredis.Cmder) error {
		h.pipelines.Add(1)
		h.pipelined.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestPresence covers what is particular to Redis; routingtest has the rest.
func TestPresence(t *testing.T) {
	t.Parallel()

	t.Run("keys_expire_with_last_device", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(server)
		r := newRedis(t, cfg)
		ctx := t.Context()
		require.NoError(t, r.SetOnline(ctx, "u", "phone", "n", 300*time.Millisecond))
		require.NoError(t, r.SetOnline(ctx, "v", "phone", "n", 300*time.Millisecond))
		require.NoError(t, r.SetOnline(ctx, "v", "laptop", "n", time.Hour))
		raw := rawClient(t, server)
		require.Eventually(t, func() bool {
			n, err := raw.Exists(ctx, cfg.KeyPrefix+"presence:{u}:exp", cfg.KeyPrefix+"presence:{u}:node").Result()
			return err == nil && n == 0
		}, 10*time.Second, 20*time.Millisecond)
		ttl, err := raw.PTTL(ctx, cfg.KeyPrefix+"presence:{v}:exp").Result()
		require.NoError(t, err)
		require.Greater(t, ttl, 50*time.Minute)
	})

	t.Run("online_many_users_in_one_round_trip", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(server)
		r := newRedis(t, cfg)
		ctx := t.Context()
		var ids []string
		want := map[string]bool{}
		for i := range 500 {
			id := "user" + strconv.Itoa(i)
			ids = append(ids, id)
			want[id] = i%3 == 0
			if i%3 == 0 {
				require.NoError(t, r.SetOnline(ctx, id, "d", "n", time.Minute))
			}
		}
		ids = append(ids, ids[0]) // duplicates are answered once

		// Warm up: the pool's connection is open after this.
		_, err := r.Online(ctx, ids[:1])
		require.NoError(t, err)
		h := &countHook{}
		redis.AddHook(r, h)
		got, err := r.Online(ctx, ids)
		require.NoError(t, err)
		require.Equal(t, want, got)
		require.Equal(t, int64(0), h.single.Load(), "no single commands")
		require.Equal(t, int64(1), h.pipelines.Load(), "one pipeline")
		require.Equal(t, int64(500), h.pipelined.Load(), "one script call per distinct user")
		raw := rawClient(t, server)

		// After SCRIPT FLUSH (as after a Redis restart) it still works.
		require.NoError(t, raw.ScriptFlush(ctx).Err())
		got, err = r.Online(ctx, ids)
		require.NoError(t, err)
		require.Equal(t, want, got)

		got, err = r.Online(ctx, nil)
		require.NoError(t, err)
		require.Empty(t, got)
	})

}
