package redis

import (
	"context"
	_ "embed"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

var (
	//go:embed lua/presence_set.lua
	presenceSetLua string
	//go:embed lua/presence_del.lua
	presenceDelLua string
	//go:embed lua/presence_online.lua
	presenceOnlineLua string

	presenceSet    = goredis.NewScript(presenceSetLua)
	presenceDel    = goredis.NewScript(presenceDelLua)
	presenceOnline = goredis.NewScript(presenceOnlineLua)
)

// SetOnline implements storage.PresenceStore: one script call that records
// the device, prunes the user's expired devices and extends the user's keys
// to the latest expiry. Cost is O(devices of the user).
func (r *Redis) SetOnline(ctx context.Context, userID, deviceID, node string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("redis: set online %s/%s: ttl %s is not positive", userID, deviceID, ttl)
	}
	if r.isClosed() {
		return wrapErr("set online", goredis.ErrClosed)
	}
	ms := (ttl + time.Millisecond - 1) / time.Millisecond
	exp, nodes := r.presenceKeys(userID)
	err := presenceSet.Run(ctx, r.client, []string{exp, nodes}, deviceID, node, int64(ms)).Err()
	return wrapErr(fmt.Sprintf("set online %s/%s", userID, deviceID), err)
}

// SetOffline implements storage.PresenceStore.
func (r *Redis) SetOffline(ctx context.Context, userID, deviceID, node string) error {
	if r.isClosed() {
		return wrapErr("set offline", goredis.ErrClosed)
	}
	exp, nodes := r.presenceKeys(userID)
	err := presenceDel.Run(ctx, r.client, []string{exp, nodes}, deviceID, node).Err()
	return wrapErr(fmt.Sprintf("set offline %s/%s", userID, deviceID), err)
}

// Online implements storage.PresenceStore: one pipeline of one small script
// call per distinct user (each touches one key, so it stays valid on a
// Redis Cluster). If Redis has lost the script (restarted, SCRIPT FLUSH),
// the script is loaded and the pipeline sent once more.
func (r *Redis) Online(ctx context.Context, userIDs []string) (map[string]bool, error) {
	online := make(map[string]bool, len(userIDs))
	ids := make([]string, 0, len(userIDs))
	for _, id := range userIDs {
		if _, dup := online[id]; !dup {
			online[id] = false
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return online, nil
	}
	if r.isClosed() {
		return nil, wrapErr("online", goredis.ErrClosed)
	}
	counts, err := r.onlineCounts(ctx, ids)
	if goredis.HasErrorPrefix(err, "NOSCRIPT") {
		if err = presenceOnline.Load(ctx, r.client).Err(); err == nil {
			counts, err = r.onlineCounts(ctx, ids)
		}
	}
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("online (%d users)", len(ids)), err)
	}
	for i, id := range ids {
		online[id] = counts[i] > 0
	}
	return online, nil
}

// onlineCounts sends one EVALSHA per id in one pipeline and returns each
// user's number of live devices, or the first error.
func (r *Redis) onlineCounts(ctx context.Context, ids []string) ([]int64, error) {
	pipe := r.client.Pipeline()
	cmds := make([]*goredis.Cmd, len(ids))
	for i, id := range ids {
		exp, _ := r.presenceKeys(id)
		cmds[i] = presenceOnline.EvalSha(ctx, pipe, []string{exp})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Exec reports the first failed command; prefer a NOSCRIPT among
		// them so the caller can reload the script.
		for _, c := range cmds {
			if goredis.HasErrorPrefix(c.Err(), "NOSCRIPT") {
				return nil, c.Err()
			}
		}
		return nil, err
	}
	counts := make([]int64, len(ids))
	for i, c := range cmds {
		n, err := c.Int64()
		if err != nil {
			return nil, err
		}
		counts[i] = n
	}
	return counts, nil
}
