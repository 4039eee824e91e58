// Package redis implements storage.Broker on Redis Streams and
// storage.PresenceStore on Redis keys that expire, for Parley's cluster
// mode. Redis is never the source of truth: messages are committed to the
// Store first, and anything lost here costs live delivery only.
//
// Key layout (KeyPrefix defaults to "parley:"):
//
//	parley:shard:{N}              stream of shard N: one entry per published
//	                              payload, field "p"; trimmed to about
//	                              StreamMaxLen entries (XADD MAXLEN ~)
//	parley:presence:{user}:exp    sorted set: device id -> expiry (Unix ms,
//	                              by Redis's clock)
//	parley:presence:{user}:node   hash: device id -> node
//
// The braces are Redis Cluster hash tags: both presence keys of a user live
// in one slot, so the Lua scripts that touch both stay valid on a cluster.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/parley-im/parley/storage"
)

// Defaults for the zero fields of Config.
const (
	DefaultKeyPrefix    = "parley:"
	DefaultStreamMaxLen = 100_000
	DefaultBlockTimeout = time.Second
	DefaultReadCount    = 128
	DefaultMinBackoff   = 50 * time.Millisecond
	DefaultMaxBackoff   = 2 * time.Second
)

// Config configures a Redis. Zero fields take the Default values above.
type Config struct {
	// URL locates the server: redis://[[user]:password@]host:port[/db]
	// (rediss:// for TLS). Required. go-redis's query options apply, e.g.
	// ?dial_timeout=1s&read_timeout=2s&pool_size=20; the defaults are
	// go-redis's (dial 5s, read and write 3s, 3 retries on a broken
	// connection).
	URL string `yaml:"url" env:"URL"`
	// KeyPrefix starts every key this package writes, so several clusters
	// (or tests) can share one Redis.
	KeyPrefix string `yaml:"key_prefix" env:"KEY_PREFIX"`
	// StreamMaxLen is the approximate number of entries a shard's stream
	// keeps (XADD MAXLEN ~). A process further behind than this loses the
	// oldest entries it has not read; its devices catch up from cursors.
	StreamMaxLen int64 `yaml:"stream_max_len" env:"STREAM_MAX_LEN"`
	// BlockTimeout is the longest a read waits for new entries. It bounds
	// how long Consume takes to notice that its ctx ended or Close was
	// called.
	BlockTimeout time.Duration `yaml:"block_timeout" env:"BLOCK_TIMEOUT"`
	// ReadCount is the most entries one read returns.
	ReadCount int64 `yaml:"read_count" env:"READ_COUNT"`
	// MinBackoff and MaxBackoff bound the wait between Consume's retries
	// while Redis is unreachable; the wait doubles from MinBackoff up to
	// MaxBackoff.
	MinBackoff time.Duration `yaml:"min_backoff" env:"MIN_BACKOFF"`
	MaxBackoff time.Duration `yaml:"max_backoff" env:"MAX_BACKOFF"`
	// Logger receives Consume's degraded-mode warnings (Redis unreachable,
	// a consumer group recreated). Nil discards them.
	Logger *slog.Logger `yaml:"-" env:"-"`
}

// Redis is a storage.Broker and a storage.PresenceStore on one Redis
// server. It is safe for concurrent use. New creates it; Close releases it.
type Redis struct {
	cfg    Config
	client *goredis.Client
	log    *slog.Logger

	// done is closed by Close; Consume calls watch it.
	done chan struct{}
	// mu guards closed and the Add half of consumers, so no Consume starts
	// after Close began waiting.
	mu        sync.Mutex
	closed    bool
	consumers sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

var (
	_ storage.Broker        = (*Redis)(nil)
	_ storage.PresenceStore = (*Redis)(nil)
)

// New connects to the Redis at cfg.URL and checks that it answers. It
// returns a wrapped storage.ErrUnavailable when Redis cannot be reached
// before ctx ends, and a plain error for an invalid Config.
func New(ctx context.Context, cfg Config) (*Redis, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	opts, err := goredis.ParseURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("redis: parse url: %w", err)
	}
	// CLIENT SETINFO and CLIENT MAINT_NOTIFICATIONS are newer than the
	// Redis 7.0 we support; skip them rather than fail or log on connect.
	opts.DisableIdentity = true
	// Fail fast when Redis is down: a publish is dropped, not queued, and
	// Consume has its own backoff. go-redis still retries a command on a
	// broken connection (MaxRetries), which covers a restarted server.
	opts.DialerRetries = 1
	opts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}
	client := goredis.NewClient(opts)
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		return nil, wrapErr("ping", err)
	}
	// Load the scripts now so the first calls do not pay for NOSCRIPT.
	// Calls still fall back to loading them when Redis loses them.
	for _, s := range []*goredis.Script{presenceSet, presenceDel, presenceOnline} {
		if err := s.Load(ctx, client).Err(); err != nil {
			_ = client.Close()
			return nil, wrapErr("load scripts", err)
		}
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Redis{cfg: cfg, client: client, log: logger.With(slog.String("backend", "redis")), done: make(chan struct{})}, nil
}

// Close stops running Consume calls, waits for them to return (at most
// about BlockTimeout) and closes the connections. It is idempotent; later
// calls return the first call's result.
func (r *Redis) Close() error {
	r.closeOnce.Do(func() {
		r.mu.Lock()
		r.closed = true
		close(r.done)
		r.mu.Unlock()
		r.consumers.Wait()
		if err := r.client.Close(); err != nil {
			r.closeErr = fmt.Errorf("redis: close: %w", err)
		}
	})
	return r.closeErr
}

// isClosed reports whether Close has begun.
func (r *Redis) isClosed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// streamKey names shard's stream.
func (r *Redis) streamKey(shard int) string {
	return r.cfg.KeyPrefix + "shard:" + strconv.Itoa(shard)
}

// presenceKeys names userID's expiry set and node hash.
func (r *Redis) presenceKeys(userID string) (exp, node string) {
	base := r.cfg.KeyPrefix + "presence:{" + userID + "}:"
	return base + "exp", base + "node"
}

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("redis: config: url is required")
	}
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.StreamMaxLen == 0 {
		c.StreamMaxLen = DefaultStreamMaxLen
	}
	if c.BlockTimeout == 0 {
		c.BlockTimeout = DefaultBlockTimeout
	}
	if c.ReadCount == 0 {
		c.ReadCount = DefaultReadCount
	}
	if c.MinBackoff == 0 {
		c.MinBackoff = DefaultMinBackoff
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = DefaultMaxBackoff
	}
	switch {
	case c.StreamMaxLen < 0:
		return c, fmt.Errorf("redis: config: stream_max_len %d is negative", c.StreamMaxLen)
	case c.BlockTimeout < time.Millisecond:
		return c, fmt.Errorf("redis: config: block_timeout %s is under 1ms", c.BlockTimeout)
	case c.ReadCount < 0:
		return c, fmt.Errorf("redis: config: read_count %d is negative", c.ReadCount)
	case c.MinBackoff < 0 || c.MaxBackoff < c.MinBackoff:
		return c, fmt.Errorf("redis: config: backoff %s..%s is not a range", c.MinBackoff, c.MaxBackoff)
	}
	return c, nil
}
