package redis_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/redis"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// server is the redis-server every test of this binary shares; each test
// uses its own key prefix. Tests that restart Redis start their own.
var server *realsvc.Redis

// quietLogger drops go-redis's own logging (dial failures while a test
// has Redis stopped on purpose).
type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

func TestMain(m *testing.M) {
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

var prefixes atomic.Int64

// uniquePrefix is a key prefix no other test uses.
func uniquePrefix() string {
	return "test" + strconv.FormatInt(prefixes.Add(1), 10) + ":"
}

// testConfig is a Config for srv with a fresh prefix and short waits, so
// tests notice cancellation and Redis coming back quickly.
func testConfig(srv *realsvc.Redis) redis.Config {
	return redis.Config{
		URL:          srv.URL(),
		KeyPrefix:    uniquePrefix(),
		BlockTimeout: 50 * time.Millisecond,
		MinBackoff:   5 * time.Millisecond,
		MaxBackoff:   50 * time.Millisecond,
	}
}

// newRedis opens a Redis on srv and closes it when the test ends.
func newRedis(t *testing.T, cfg redis.Config) *redis.Redis {
	t.Helper()
	r, err := redis.New(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, r.Close()) })
	return r
}

// rawClient is a plain go-redis client on srv for inspecting keys.
func rawClient(t *testing.T, srv *realsvc.Redis) *goredis.Client {
	t.Helper()
	opts, err := goredis.ParseURL(srv.URL())
	require.NoError(t, err)
	opts.DisableIdentity = true
	c := goredis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// consumer runs Consume in the background and collects payloads.
type consumer struct {
	got    chan string
	cancel context.CancelFunc
	done   chan error
}

// startConsumer starts Consume(shard, group) and stops it when the test
// ends. handle, if set, runs before the payload is reported.
func startConsumer(t *testing.T, r *redis.Redis, shard int, group string, handle func(ctx context.Context, p string)) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	c := &consumer{got: make(chan string, 1024), cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- r.Consume(ctx, shard, group, func(ctx context.Context, payload []byte) {
			if handle != nil {
				handle(ctx, string(payload))
			}
			c.got <- string(payload)
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop cancels Consume and waits for it to return nil. Idempotent.
func (c *consumer) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case err, ok := <-c.done:
		if ok {
			require.NoError(t, err)
			close(c.done)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Consume did not return after its ctx ended")
	}
}

// expect reads len(want) payloads and requires them in order.
func (c *consumer) expect(t *testing.T, want ...string) {
	t.Helper()
	got := make([]string, 0, len(want))
	for range want {
		select {
		case p := <-c.got:
			got = append(got, p)
		case <-time.After(10 * time.Second):
			require.Equal(t, want, got, "timed out waiting for entries")
		}
	}
	require.Equal(t, want, got)
}

// publish publishes payloads in order.
func publish(t *testing.T, r *redis.Redis, shard int, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		require.NoError(t, r.Publish(t.Context(), shard, []byte(p)))
	}
}

func seq(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}
