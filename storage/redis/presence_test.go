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

func TestPresence(t *testing.T) {
	t.Parallel()

	t.Run("set_online_and_offline", func(t *testing.T) {
		t.Parallel()
		r := newRedis(t, testConfig(server))
		ctx := t.Context()
		require.NoError(t, r.SetOnline(ctx, "alice", "phone", "node1", time.Minute))
		require.NoError(t, r.SetOnline(ctx, "alice", "laptop", "node2", time.Minute))
		got, err := r.Online(ctx, []string{"alice", "bob"})
		require.NoError(t, err)
		require.Equal(t, map[string]bool{"alice": true, "bob": false}, got)

		require.NoError(t, r.SetOffline(ctx, "alice", "phone", "node1"))
		got, err = r.Online(ctx, []string{"alice"})
		require.NoError(t, err)
		require.True(t, got["alice"], "the laptop is still online")

		require.NoError(t, r.SetOffline(ctx, "alice", "laptop", "node2"))
		require.NoError(t, r.SetOffline(ctx, "alice", "laptop", "node2"), "offline twice is fine")
		got, err = r.Online(ctx, []string{"alice"})
		require.NoError(t, err)
		require.False(t, got["alice"])
	})

	t.Run("late_offline_from_old_node_is_ignored", func(t *testing.T) {
		t.Parallel()
		r := newRedis(t, testConfig(server))
		ctx := t.Context()
		require.NoError(t, r.SetOnline(ctx, "u", "phone", "old", time.Minute))
		require.NoError(t, r.SetOnline(ctx, "u", "phone", "new", time.Minute))
		require.NoError(t, r.SetOffline(ctx, "u", "phone", "old"))
		got, err := r.Online(ctx, []string{"u"})
		require.NoError(t, err)
		require.True(t, got["u"])
	})

	t.Run("expiry_and_refresh", func(t *testing.T) {
		t.Parallel()
		cfg := testConfig(server)
		r := newRedis(t, cfg)
		ctx := t.Context()
		require.NoError(t, r.SetOnline(ctx, "u", "phone", "n", 300*time.Millisecond))
		require.NoError(t, r.SetOnline(ctx, "v", "phone", "n", time.Hour))
		// A refresh with a long ttl keeps v online however long this test
		// takes; u's short ttl runs out by itself.
		require.NoError(t, r.SetOnline(ctx, "v", "phone", "n", time.Hour))
		require.Eventually(t, func() bool {
			got, err := r.Online(ctx, []string{"u", "v"})
			return err == nil && !got["u"] && got["v"]
		}, 10*time.Second, 20*time.Millisecond)

		// The user's keys expire with the last device.
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

	t.Run("invalid_ttl", func(t *testing.T) {
		t.Parallel()
		r := newRedis(t, testConfig(server))
		require.Error(t, r.SetOnline(t.Context(), "u", "d", "n", 0))
	})
}
