package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/analytics"
)

// Defaults for the zero values of EventWriterConfig.
const (
	// DefaultEventBatchSize is EventWriterConfig.BatchSize when it is 0.
	DefaultEventBatchSize = 5000
	// DefaultEventFlushInterval is EventWriterConfig.FlushInterval when
	// it is 0.
	DefaultEventFlushInterval = time.Second
	// DefaultEventBufferSize is EventWriterConfig.BufferSize when it is 0.
	DefaultEventBufferSize = 100_000
	// DefaultEventWriteTimeout is EventWriterConfig.WriteTimeout when it
	// is 0.
	DefaultEventWriteTimeout = 10 * time.Second
	// DefaultEventMinBackoff and DefaultEventMaxBackoff are
	// EventWriterConfig.MinBackoff and MaxBackoff when they are 0.
	DefaultEventMinBackoff = 100 * time.Millisecond
	DefaultEventMaxBackoff = 30 * time.Second
	// DefaultEventFinalFlushTimeout is EventWriterConfig.FinalFlushTimeout
	// when it is 0.
	DefaultEventFinalFlushTimeout = 5 * time.Second
)

// ErrWriterStopped is returned by EventWriter.Flush once Run has
// returned.
var ErrWriterStopped = errors.New("clickhouse: event writer stopped")

// EventWriterConfig configures an EventWriter.
type EventWriterConfig struct {
	// BatchSize is how many buffered events make Run write a batch at
	// once, without waiting for FlushInterval; also the largest batch it
	// writes. 0 means DefaultEventBatchSize.
	BatchSize int `yaml:"batch_size" env:"BATCH_SIZE"`
	// FlushInterval is how often Run writes what is buffered, however
	// little. 0 means DefaultEventFlushInterval.
	FlushInterval time.Duration `yaml:"flush_interval" env:"FLUSH_INTERVAL"`
	// BufferSize bounds the events held in memory: buffered, being
	// written and waiting for a retry. Record drops (and counts) the
	// events beyond it. At least BatchSize; 0 means
	// DefaultEventBufferSize.
	BufferSize int `yaml:"buffer_size" env:"BUFFER_SIZE"`
	// WriteTimeout bounds each insert (on top of the DB's CallTimeout).
	// 0 means DefaultEventWriteTimeout.
	WriteTimeout time.Duration `yaml:"write_timeout" env:"WRITE_TIMEOUT"`
	// MinBackoff and MaxBackoff bound the wait before retrying a batch
	// that failed: it starts at MinBackoff and doubles up to MaxBackoff
	// (with ±20% jitter, so a fleet of servers does not retry in step).
	// 0 means DefaultEventMinBackoff and DefaultEventMaxBackoff.
	MinBackoff time.Duration `yaml:"min_backoff" env:"MIN_BACKOFF"`
	MaxBackoff time.Duration `yaml:"max_backoff" env:"MAX_BACKOFF"`
	// FinalFlushTimeout bounds the flush Run makes once its ctx ends.
	// 0 means DefaultEventFinalFlushTimeout.
	FinalFlushTimeout time.Duration `yaml:"final_flush_timeout" env:"FINAL_FLUSH_TIMEOUT"`
	// Node names this server; Record puts it in events without a Node.
	Node string `yaml:"node" env:"NODE"`
	// Logger receives Warn on a failed write (to be retried) and Error on
	// a batch dropped by a write that cannot succeed. nil discards.
	Logger *slog.Logger `yaml:"-" env:"-"`
}

// withDefaults fills the zero values and checks the rest.
func (c EventWriterConfig) withDefaults() (EventWriterConfig, error) {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"BatchSize", int64(c.BatchSize)}, {"BufferSize", int64(c.BufferSize)},
		{"FlushInterval", int64(c.FlushInterval)}, {"WriteTimeout", int64(c.WriteTimeout)},
		{"MinBackoff", int64(c.MinBackoff)}, {"MaxBackoff", int64(c.MaxBackoff)},
		{"FinalFlushTimeout", int64(c.FinalFlushTimeout)},
	} {
		if f.v < 0 {
			return c, fmt.Errorf("%s is negative", f.name)
		}
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultEventBatchSize
	}
	if c.BufferSize == 0 {
		c.BufferSize = max(DefaultEventBufferSize, c.BatchSize)
	}
	def(&c.FlushInterval, DefaultEventFlushInterval)
	def(&c.WriteTimeout, DefaultEventWriteTimeout)
	def(&c.MinBackoff, DefaultEventMinBackoff)
	def(&c.MaxBackoff, max(DefaultEventMaxBackoff, c.MinBackoff))
	def(&c.FinalFlushTimeout, DefaultEventFinalFlushTimeout)
	if c.BufferSize < c.BatchSize {
		return c, fmt.Errorf("BufferSize %d is less than BatchSize %d", c.BufferSize, c.BatchSize)
	}
	if c.MaxBackoff < c.MinBackoff {
		return c, fmt.Errorf("MaxBackoff %s is less than MinBackoff %s", c.MaxBackoff, c.MinBackoff)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// EventWriter batches analytics events into the events table.
//
// Analytics may lose events; the message archive may not. So the writer
// never makes its callers wait: Record only appends to a fixed-size
// buffer, and when ClickHouse is slow or down and the buffer is full,
// further events are dropped and counted (Stats.Dropped). A batch that
// fails with a transient error stays in the buffer and is retried, with
// backoff, before anything newer; a batch that cannot succeed (the
// server refuses it for good) is dropped and counted.
//
// Every event gets its ID when recorded, and a retried batch carries the
// same IDs: if an insert timed out but had landed, the retry writes
// copies the events table collapses, and the queries (which read with
// FINAL) count each event once. So within the buffer's bound, delivery
// is exactly once in effect.
//
// The caller owns it: it starts Run in a goroutine and ends it by
// cancelling Run's ctx. Record and Stats are safe for concurrent use,
// before, during and after Run.
type EventWriter struct {
	cfg EventWriterConfig
	// kick wakes Run when a full batch is buffered; flushReq carries
	// Flush's requests; done is closed when Run returns.
	kick     chan struct{}
	flushReq chan chan error
	done     chan struct{}
	// ticks, when set (by tests), replaces the FlushInterval ticker.
	ticks <-chan time.Time
	// write inserts a batch: db.WriteEvents, or a test's stand-in.
	write   func(context.Context, []Event) error
	running atomic.Bool

	mu sync.Mutex
	// pending are the recorded events Run has not taken yet.
	pending []Event
	// held counts pending plus the events Run has taken and not yet
	// written or dropped: what BufferSize bounds.
	held    int
	stopped bool

	written, dropped, failed atomic.Uint64

	// Only Run's goroutine touches these: the batch to send again, when
	// and after how long a wait.
	retry       []Event
	backoff     time.Duration
	nextAttempt time.Time
}

// EventWriterStats are an EventWriter's counters since it was made.
type EventWriterStats struct {
	// Written counts events inserted (a retried batch counts once).
	Written uint64
	// Dropped counts events lost: recorded while the buffer was full or
	// after Run returned, invalid (unknown Kind, At out of range), in a
	// batch the server refused for good, or left when Run's final flush
	// failed.
	Dropped uint64
	// FailedFlushes counts inserts that failed (each retry counts).
	FailedFlushes uint64
	// Buffered is how many events are held now (at most BufferSize).
	Buffered int
}

// NewEventWriter returns a writer of events into db's events table (a
// *DB, or another analytics.Writer with the same contract: the embedded
// store batches through it too). It writes nothing until Run is started.
// db must stay open until Run has returned.
func NewEventWriter(db analytics.Writer, cfg EventWriterConfig) (*EventWriter, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("clickhouse: event writer: %w", err)
	}
	return &EventWriter{
		write:    db.WriteEvents,
		cfg:      cfg,
		kick:     make(chan struct{}, 1),
		flushReq: make(chan chan error),
		done:     make(chan struct{}),
	}, nil
}

// Record buffers e for writing and returns at once; it never blocks on
// ClickHouse. A zero e.ID gets a random ID, a zero e.At the current
// time, an empty e.Node the configured Node. The event is dropped (and
// counted in Stats.Dropped) if the buffer holds BufferSize events, if e
// is invalid, or if Run has returned.
func (w *EventWriter) Record(e Event) {
	if e.ID == uuid.Nil {
		id, err := uuid.NewRandom()
		if err != nil {
			w.dropped.Add(1)
			return
		}
		e.ID = id
	}
	if e.At.IsZero() {
		e.At = time.Now()
	}
	if e.Node == "" {
		e.Node = w.cfg.Node
	}
	if e.Validate() != nil {
		w.dropped.Add(1)
		return
	}
	w.mu.Lock()
	if w.stopped || w.held >= w.cfg.BufferSize {
		w.mu.Unlock()
		w.dropped.Add(1)
		return
	}
	w.pending = append(w.pending, e)
	w.held++
	full := len(w.pending) >= w.cfg.BatchSize
	w.mu.Unlock()
	if full {
		select {
		case w.kick <- struct{}{}:
		default: // Run has a wake-up pending already
		}
	}
}

// Stats returns the counters. Safe for concurrent use.
func (w *EventWriter) Stats() EventWriterStats {
	w.mu.Lock()
	held := w.held
	w.mu.Unlock()
	return EventWriterStats{
		Written:       w.written.Load(),
		Dropped:       w.dropped.Load(),
		FailedFlushes: w.failed.Load(),
		Buffered:      held,
	}
}

// Run writes buffered events until ctx ends: a batch as soon as
// BatchSize events are buffered, and whatever is buffered every
// FlushInterval; failed batches are retried with backoff. When ctx ends
// it makes a final flush bounded by FinalFlushTimeout (ignoring any
// backoff), counts what that could not write as dropped, and returns the
// final flush's error (nil if everything was written). Run may be
// called once; a second call returns an error at once.
func (w *EventWriter) Run(ctx context.Context) error {
	if w.running.Swap(true) {
		return errors.New("clickhouse: event writer: Run called twice")
	}
	defer close(w.done)
	ticks := w.ticks
	if ticks == nil {
		t := time.NewTicker(w.cfg.FlushInterval)
		defer t.Stop()
		ticks = t.C
	}
	for {
		select {
		case <-ctx.Done():
			// The final flush outlives ctx, with a deadline of its own.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.FinalFlushTimeout)
			err := w.flush(fctx, true, true)
			cancel()
			w.stop()
			if err != nil {
				return fmt.Errorf("clickhouse: event writer: final flush: %w", err)
			}
			return nil
		case <-ticks:
			_ = w.flush(ctx, true, false) // logged; retried on a later tick
		case <-w.kick:
			_ = w.flush(ctx, false, false)
		case reply := <-w.flushReq:
			reply <- w.flush(ctx, true, true)
		}
	}
}

// Flush asks Run to write everything buffered now (retrying a failed
// batch at once, whatever the backoff) and waits for the outcome: nil
// once all that was buffered when Run took the request is written, the
// write's error otherwise (the events stay buffered for a retry), ctx's
// error if ctx ends first, or ErrWriterStopped once Run has returned.
// Without Run running, it waits for Run or ctx.
func (w *EventWriter) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case w.flushReq <- reply:
	case <-w.done:
		return ErrWriterStopped
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush sends the batch awaiting a retry, then what is pending, in
// batches of at most BatchSize: all of it, or (all false) only full
// batches. Without force, it does nothing while a retry is backing off.
// It stops at the first failure.
func (w *EventWriter) flush(ctx context.Context, all, force bool) error {
	if w.retry != nil {
		if !force && time.Now().Before(w.nextAttempt) {
			return nil
		}
		if err := w.send(ctx, w.retry); err != nil {
			return err
		}
		w.retry = nil
	}
	for {
		batch := w.take(all)
		if len(batch) == 0 {
			return nil
		}
		if err := w.send(ctx, batch); err != nil {
			return err
		}
	}
}

// take removes the next batch from pending: up to BatchSize events, and
// (all false) only a full batch.
func (w *EventWriter) take(all bool) []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := min(len(w.pending), w.cfg.BatchSize)
	if n == 0 || (!all && n < w.cfg.BatchSize) {
		return nil
	}
	batch := w.pending[:n:n]
	w.pending = w.pending[n:]
	if len(w.pending) == 0 {
		// Let the next append start a fresh array rather than grow
		// behind the batch in flight.
		w.pending = nil
	}
	return batch
}

// send writes batch. On success or on a failure that retrying cannot
// fix, the batch leaves the buffer (written or dropped); on a transient
// failure it becomes the retry, due after the next backoff.
func (w *EventWriter) send(ctx context.Context, batch []Event) error {
	wctx, cancel := context.WithTimeout(ctx, w.cfg.WriteTimeout)
	err := w.write(wctx, batch)
	cancel()
	if err == nil {
		w.written.Add(uint64(len(batch)))
		w.release(len(batch))
		w.backoff = 0
		return nil
	}
	w.failed.Add(1)
	if retryable(err) {
		w.retry = batch
		w.backoff = min(max(2*w.backoff, w.cfg.MinBackoff), w.cfg.MaxBackoff)
		jitter := time.Duration(rand.Int64N(int64(w.backoff)/5+1)) * 2
		w.nextAttempt = time.Now().Add(w.backoff - w.backoff/5 + jitter)
		w.cfg.Logger.WarnContext(ctx, "analytics events not written; will retry",
			slog.Int("events", len(batch)), slog.Duration("retry_in", w.backoff), slog.Any("err", err))
		return err
	}
	w.dropped.Add(uint64(len(batch)))
	w.release(len(batch))
	w.cfg.Logger.ErrorContext(ctx, "analytics events dropped: the server refused the batch",
		slog.Int("events", len(batch)), slog.Any("err", err))
	return err
}

// release forgets n events written or dropped.
func (w *EventWriter) release(n int) {
	w.mu.Lock()
	w.held -= n
	w.mu.Unlock()
}

// stop counts what is still held as dropped and makes Record drop from
// now on.
func (w *EventWriter) stop() {
	w.mu.Lock()
	w.dropped.Add(uint64(w.held))
	w.held = 0
	w.pending = nil
	w.stopped = true
	w.mu.Unlock()
	w.retry = nil
}

// retryable reports whether a failed write may succeed later: the
// server was unreachable or overloaded, or the write ran out of time
// (its outcome unknown; retrying is safe, copies collapse).
func retryable(err error) bool {
	return errors.Is(err, storage.ErrUnavailable) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, context.Canceled)
}
