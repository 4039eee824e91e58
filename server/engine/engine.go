// Package engine is Parley's delivery engine: it orders and commits
// messages in batches, fans committed messages out to connected devices in
// seq order, coalesces device acknowledgements into cursor writes, and
// catches reconnecting devices up from their cursors.
//
// Every write that takes a seq (messages, recalls, membership changes) goes
// through one committer goroutine, and every fan-out through one fan-out
// goroutine fed in commit order, so each conversation's frames reach each
// device in seq order.
package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/analytics"
)

// ErrClosed is returned by calls made after Close began.
var ErrClosed = errors.New("engine: closed")

// Config tunes the engine.
type Config struct {
	// BatchSize is the most messages committed in one transaction.
	BatchSize int `yaml:"batch_size" env:"BATCH_SIZE"`
	// CommitLinger is how long the committer waits for more messages
	// before committing a batch that is not full. Each commit costs
	// about the same whatever its size (SQLite writes its pages, PostgreSQL
	// a round trip), so at steady load a short wait buys larger batches
	// and more messages per second; every message waits up to this long.
	// 0 commits as soon as the queue is empty.
	CommitLinger time.Duration `yaml:"commit_linger" env:"COMMIT_LINGER"`
	// AckFlushInterval is how often coalesced device acks are written.
	// A crash loses at most this much ack progress, which costs re-sent
	// messages (dropped by client de-duplication), never lost ones.
	AckFlushInterval time.Duration `yaml:"ack_flush_interval" env:"ACK_FLUSH_INTERVAL"`
	// CatchupLimit is the most messages per conversation streamed on
	// reconnect; older ones are announced with a Gap frame.
	CatchupLimit int `yaml:"catchup_limit" env:"CATCHUP_LIMIT"`
	// MemberCacheSize bounds the number of conversations whose member
	// lists are cached.
	MemberCacheSize int `yaml:"member_cache_size" env:"MEMBER_CACHE_SIZE"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		BatchSize:        256,
		AckFlushInterval: time.Second,
		CatchupLimit:     1000,
		MemberCacheSize:  100_000,
	}
}

// Store is what the engine needs from the system of record.
type Store interface {
	AppendMessages(ctx context.Context, msgs []storage.NewMessage) ([]storage.AppendResult, error)
	RecallMessage(ctx context.Context, conversationID string, seq uint64, notice storage.NewMessage) (storage.Message, storage.Message, error)
	CreateGroup(ctx context.Context, g storage.NewGroup) (storage.Conversation, storage.Message, error)
	AddMembers(ctx context.Context, conversationID string, userIDs []string, maxMembers int, notice storage.NewMessage) (storage.Message, error)
	RemoveMember(ctx context.Context, conversationID, userID string, notice storage.NewMessage) (storage.Message, error)
	ListMembers(ctx context.Context, conversationID string) ([]storage.Member, error)
	MarkRead(ctx context.Context, conversationID, userID string, seq uint64) (uint64, bool, error)
	SaveCursors(ctx context.Context, cursors []storage.Cursor) error
	Backlogs(ctx context.Context, userID, deviceID string) ([]storage.Backlog, error)
	History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error)
}

// Router hands frames to the devices of users wherever they are
// connected: the hub of this process, or in a cluster, every process of
// the users' shards. Route must not block on devices; deliveries of one
// call reach each device in order.
type Router interface {
	Route(ctx context.Context, ds []hub.Delivery)
}

// Engine is safe for concurrent use. Start it once; Close stops it.
type Engine struct {
	cfg     Config
	store   Store
	router  Router
	logger  *slog.Logger
	members *memberCache
	acks    *ackBuffer
	m       *metrics.Engine
	// events takes the analytics events of commits and reads; nil
	// records none.
	events EventRecorder

	submit chan *op
	fanout chan fanoutItem

	closing atomic.Bool
	quit    chan struct{}
	// committed is closed once the committer has answered everything
	// submitted; the final ack flush waits for it.
	committed chan struct{}
	closeOnce sync.Once
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

func (e *Engine) cancel() {
	if e.stop != nil {
		e.stop()
	}
}

// New returns an engine that is not started yet. router is the hub itself
// on a single node.
func New(cfg Config, store Store, router Router, logger *slog.Logger) *Engine {
	return &Engine{
		cfg:       cfg,
		store:     store,
		router:    router,
		logger:    logger,
		members:   newMemberCache(cfg.MemberCacheSize),
		acks:      newAckBuffer(),
		submit:    make(chan *op, cfg.BatchSize*4),
		fanout:    make(chan fanoutItem, 64),
		quit:      make(chan struct{}),
		committed: make(chan struct{}),
	}
}

// EventRecorder takes analytics events (never message content). Record
// must not block: it is called on the commit path.
type EventRecorder interface {
	Record(e analytics.Event)
}

// SetEvents makes the engine record a message_sent event per committed
// message (not for a duplicate send, nor for system notices) and a
// message_read event per read mark that moves. nil records none. Call it
// before Start.
func (e *Engine) SetEvents(r EventRecorder) { e.events = r }

// SetMetrics makes the engine record into m (nil: no metrics). Call it
// before Start.
func (e *Engine) SetMetrics(m *metrics.Engine) { e.m = m }

// Start launches the committer, the fan-out and the ack flusher. They run
// until Close.
func (e *Engine) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	e.stop = cancel
	e.wg.Go(func() { e.commitLoop(ctx) })
	e.wg.Go(func() { e.fanoutLoop(ctx) })
	e.wg.Go(func() { e.ackLoop(ctx) })
}

// Close stops accepting work, finishes what was submitted, writes the
// buffered acks and waits for every goroutine. Callers should stop sending
// first (the server closes streams and drains unary calls before). A
// second Close is a no-op. If ctx ends first, in-flight store calls are
// cancelled and Close returns ctx's error once the goroutines exit.
func (e *Engine) Close(ctx context.Context) error {
	var err error
	e.closeOnce.Do(func() {
		e.closing.Store(true)
		close(e.quit)
		done := make(chan struct{})
		go func() {
			e.wg.Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-ctx.Done():
			e.cancel()
			<-done
			err = ctx.Err()
		}
		e.cancel()
	})
	return err
}
