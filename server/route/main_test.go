package route_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// server is the redis-server shared by tests that do not restart it.
var server *realsvc.Redis

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
	// go-redis logs reconnect attempts through a global logger.
	goredis.SetLogger(quietLogger{})
	var err error
	server, err = realsvc.StartRedis(realsvc.RedisOptions{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}
