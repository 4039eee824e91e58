package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-im/parley/storage"
)

// wrapErr translates a go-redis error into Parley's sentinels, with op as
// context: goredis.Nil becomes storage.ErrNotFound, anything that says
// Redis is unreachable or temporarily refusing becomes
// storage.ErrUnavailable, and context errors are returned as they are.
func wrapErr(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	case errors.Is(err, goredis.Nil):
		return fmt.Errorf("redis: %s: %w", op, storage.ErrNotFound)
	case errors.Is(err, goredis.ErrClosed):
		return fmt.Errorf("redis: %s: closed: %w", op, storage.ErrUnavailable)
	case isTransient(err):
		return fmt.Errorf("redis: %s: %w: %w", op, storage.ErrUnavailable, err)
	default:
		return fmt.Errorf("redis: %s: %w", op, err)
	}
}

// transientReplies are the prefixes of Redis error replies that go away by
// themselves: a server loading its data after a restart, busy with a
// script, failing over, or out of memory until streams are trimmed.
var transientReplies = []string{"LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "READONLY", "CLUSTERDOWN", "OOM", "MAXCLIENTS"}

// isTransient reports whether err may go away by retrying: any failure to
// talk to Redis at all (refused, reset, timed out, EOF, pool exhausted),
// and the transient error replies. Other error replies (WRONGTYPE,
// NOPERM, syntax) are permanent.
func isTransient(err error) bool {
	var reply goredis.Error
	if !errors.As(err, &reply) {
		// Not a reply from Redis: the connection failed.
		return !errors.Is(err, goredis.ErrClosed)
	}
	msg := reply.Error()
	for _, p := range transientReplies {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// isNoGroup reports whether Redis lost a consumer group or its stream
// (NOGROUP), as after a restart without persistence.
func isNoGroup(err error) bool {
	return goredis.HasErrorPrefix(err, "NOGROUP")
}
