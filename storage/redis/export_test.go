package redis

import goredis "github.com/redis/go-redis/v9"

// AddHook lets black-box tests observe the commands r sends.
func AddHook(r *Redis, h goredis.Hook) { r.client.AddHook(h) }
