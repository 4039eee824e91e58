// Package archive runs the message archiver: it moves every committed
// change of the primary store (appends, recalls, later edits) into the
// long-term archive (ClickHouse), through the store's outbox.
//
// The hand-off is storage.ArchiveOutbox: each transaction that commits a
// change also writes an outbox row; the archiver reads the oldest rows,
// loads those messages' current state, writes them to the archive and
// only then deletes exactly the rows it read. A crash (of the archiver,
// the server, the archive) between the write and the delete repeats the
// batch, which the archive collapses (it keeps one state per message, the
// newest); a transaction that commits late is still in the outbox at the
// next read. Nothing is skipped and, in effect, nothing is doubled.
//
// One archiver runs per cluster: Run archives only while it holds a lease
// (storage.LeaseStore) and stops the moment a renewal fails. The lease
// saves work rather than guarding correctness: two archivers at once
// would write the same states twice, which the archive collapses too.
package archive

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/storage"
)

// LeaseName is the lease the archivers of a cluster share.
const LeaseName = "archive"

const (
	// callTimeout bounds each store and archive call, on top of the
	// lease's validity.
	callTimeout = 30 * time.Second
	// minBackoff and maxBackoff bound the wait after a failed batch; it
	// doubles per failure in a row.
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// lagEvery is how often the outbox lag is measured while the outbox
	// is being drained (every idle poll measures it too).
	lagEvery = 5 * time.Second
	// releaseTimeout bounds giving the lease up when Run ends.
	releaseTimeout = 5 * time.Second
)

// Config tunes the archiver.
type Config struct {
	// BatchSize is the most outbox entries (and so messages) one batch
	// reads, archives and acks; it bounds the archiver's memory.
	BatchSize int `yaml:"batch_size" env:"BATCH_SIZE"`
	// Interval is how long the archiver waits after finding the outbox
	// drained (a batch shorter than BatchSize) before it looks again: the
	// archive's delay behind the store when traffic is light.
	Interval time.Duration `yaml:"interval" env:"INTERVAL"`
	// LeaseTTL is how long the archiver lease lasts without renewal; the
	// holder renews it every third of it. When the holder dies, another
	// process takes over within LeaseTTL.
	LeaseTTL time.Duration `yaml:"lease_ttl" env:"LEASE_TTL"`
	// HotWindow is how much recent history the primary store keeps once
	// the archive has it: older messages leave the store (storage.
	// HotWindow.TrimArchived) and are read from the archive. 0 keeps
	// everything in the store.
	HotWindow time.Duration `yaml:"hot_window" env:"HOT_WINDOW"`
	// TrimInterval is how often the archiver, when the outbox is drained,
	// looks for messages that have left the window. Each look walks the
	// conversations table.
	TrimInterval time.Duration `yaml:"trim_interval" env:"TRIM_INTERVAL"`
	// EraseInterval is how often the archiver erases recalled messages'
	// earlier states from the archive's disk (RecallEraser), when it has
	// archived a recall since the last time, and once when it takes the
	// lease. Readers never see them; this is about the bytes. Each erase
	// rewrites the archive table in the background (about half a second
	// per million messages on ClickHouse 18.16). 0 leaves them to the
	// archive's own merges.
	EraseInterval time.Duration `yaml:"erase_interval" env:"ERASE_INTERVAL"`
}

// RecallEraser is an archive that can erase, from its storage, the
// earlier states of the messages it holds as recalled
// (clickhouse.DB.EraseRecalled).
type RecallEraser interface {
	EraseRecalled(ctx context.Context) error
}

// DefaultConfig returns the defaults: batches of 5000 every second when
// idle, a 15 s lease, a 30-day window in the store trimmed every 5
// minutes, recalled content erased from the archive's disk every 6 hours.
func DefaultConfig() Config {
	return Config{
		BatchSize: 5000, Interval: time.Second, LeaseTTL: 15 * time.Second,
		HotWindow: 30 * 24 * time.Hour, TrimInterval: 5 * time.Minute,
		EraseInterval: 6 * time.Hour,
	}
}

// Validate reports values Run cannot work with.
func (c Config) Validate() error {
	var errs []error
	if c.BatchSize < 1 {
		errs = append(errs, fmt.Errorf("batch_size %d: must be at least 1", c.BatchSize))
	}
	if c.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: must be positive", c.Interval))
	}
	if c.HotWindow < 0 {
		errs = append(errs, fmt.Errorf("hot_window %s: must not be negative (0 keeps everything)", c.HotWindow))
	}
	if c.HotWindow > 0 && c.TrimInterval <= 0 {
		errs = append(errs, fmt.Errorf("trim_interval %s: must be positive when hot_window is set", c.TrimInterval))
	}
	if c.EraseInterval < 0 {
		errs = append(errs, fmt.Errorf("erase_interval %s: must not be negative (0 leaves recalled content to merges)", c.EraseInterval))
	}
	if c.LeaseTTL < 300*time.Millisecond {
		errs = append(errs, fmt.Errorf("lease_ttl %s: must be at least 300ms", c.LeaseTTL))
	}
	return errors.Join(errs...)
}

// Source is what the archiver needs from the primary store.
type Source interface {
	storage.ArchiveOutbox
	storage.LeaseStore
	storage.HotWindow
}

// Archiver moves the outbox into the archive. Create it with New; Run it
// once.
type Archiver struct {
	cfg    Config
	src    Source
	dst    storage.MessageArchive
	holder string
	logger *slog.Logger
	m      *metrics.Archive
}

// New returns an archiver of src into dst that is not running yet. node
// names this process in the lease (a random suffix makes the holder
// unique even if two processes share a node name). m may be nil.
func New(cfg Config, src Source, dst storage.MessageArchive, node string, logger *slog.Logger, m *metrics.Archive) *Archiver {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return &Archiver{
		cfg:    cfg,
		src:    src,
		dst:    dst,
		holder: node + "-" + hex.EncodeToString(b[:]),
		logger: logger,
		m:      m,
	}
}

// runState is Run's state between steps.
type runState struct {
	held bool
	// validUntil is when the lease ends unless renewed (measured from
	// before the renewal was sent, so it errs early); renewAt is when to
	// renew it.
	validUntil, renewAt time.Time
	// enabled is set once EnableArchive succeeded, backfilled once
	// BackfillOutbox reported done.
	enabled, backfilled bool
	// backfillQueued counts what this process's backfill queued.
	backfillQueued int
	backoff        time.Duration
	lagAt          time.Time
	// trimAt is when the next trim is due.
	trimAt time.Time
	// eraseAt is when the next erase of recalled content is due, if
	// recallsArchived (since the last erase, or since the lease was
	// taken: the previous holder may have archived some) says there is
	// any.
	eraseAt         time.Time
	recallsArchived bool
}

// Run archives until ctx ends, then gives the lease up and returns nil;
// it returns an error only for an invalid Config. It never gives up on
// failures: a store or archive that is down or slow makes it back off and
// retry, while the outbox (in the store) grows; memory stays bounded by
// BatchSize. The caller owns Run's goroutine: start it, cancel ctx,
// and wait for Run to return.
func (a *Archiver) Run(ctx context.Context) error {
	if err := a.cfg.Validate(); err != nil {
		return fmt.Errorf("archive: %w", err)
	}
	var st runState
	defer a.release(ctx, &st)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		timer.Reset(a.step(ctx, &st))
	}
}

// step takes or renews the lease when due, archives one batch if it holds
// the lease, and returns how long to wait before the next step.
func (a *Archiver) step(ctx context.Context, st *runState) time.Duration {
	now := time.Now()
	if !st.held || !now.Before(st.renewAt) {
		if !a.renew(ctx, st, now) {
			return a.cfg.LeaseTTL / 3
		}
	}
	if !st.enabled {
		cctx, cancel := context.WithDeadline(ctx, st.validUntil)
		err := a.src.EnableArchive(cctx)
		cancel()
		if err != nil {
			return a.failed(ctx, st, "enable archive", err)
		}
		st.enabled = true
	}
	n, err := a.batch(ctx, st)
	if err != nil {
		return a.failed(ctx, st, "archive batch", err)
	}
	st.backoff = 0
	if n == a.cfg.BatchSize {
		return 0 // more is waiting
	}
	// The rest waits for a drained outbox: new messages come first.
	for _, job := range []struct {
		what string
		run  func(context.Context, *runState, time.Time) (more bool, err error)
	}{
		{"backfill the outbox", a.backfill},
		{"trim the store's window", a.trim},
		{"erase recalled content", a.erase},
	} {
		more, err := job.run(ctx, st, now)
		if err != nil {
			return a.failed(ctx, st, job.what, err)
		}
		if more {
			return 0
		}
	}
	return min(a.cfg.Interval, time.Until(st.renewAt))
}

// backfill queues a batch of the messages from before the archive was
// enabled, until the store says none is left; more reports that it queued
// some, which the next steps archive.
func (a *Archiver) backfill(ctx context.Context, st *runState, _ time.Time) (bool, error) {
	if st.backfilled {
		return false, nil
	}
	cctx, cancel := context.WithDeadline(ctx, st.validUntil)
	defer cancel()
	enqueued, done, err := a.src.BackfillOutbox(cctx, a.cfg.BatchSize)
	if err != nil {
		return false, err
	}
	a.m.Backfilled(enqueued)
	st.backfillQueued += enqueued
	if st.backfilled = done; done && st.backfillQueued > 0 {
		a.logger.InfoContext(ctx, "archive: backfill done; every message from before the archive was enabled is queued",
			slog.Int("queued_here", st.backfillQueued))
	}
	return enqueued > 0, nil
}

// trim moves up to BatchSize messages older than the window out of the
// store's history when a trim is due; more reports a full batch. A
// message still in the outbox is not passed anyway, so trimming behind a
// backlog would find little.
func (a *Archiver) trim(ctx context.Context, st *runState, now time.Time) (bool, error) {
	if a.cfg.HotWindow <= 0 || now.Before(st.trimAt) {
		return false, nil
	}
	cctx, cancel := context.WithDeadline(ctx, st.validUntil)
	defer cancel()
	cctx, ccancel := context.WithTimeout(cctx, callTimeout)
	defer ccancel()
	n, err := a.src.TrimArchived(cctx, now.Add(-a.cfg.HotWindow), a.cfg.BatchSize)
	if n > 0 {
		a.m.Trimmed(n)
		a.logger.DebugContext(ctx, "archive: store window trimmed", slog.Int("messages", n))
	}
	if err != nil || n == a.cfg.BatchSize {
		return err == nil, err
	}
	st.trimAt = now.Add(a.cfg.TrimInterval)
	return false, nil
}

// erase has the archive erase recalled content from its storage when an
// erase is due and a recall was archived since the last one.
func (a *Archiver) erase(ctx context.Context, st *runState, now time.Time) (bool, error) {
	eraser, ok := a.dst.(RecallEraser)
	if !ok || a.cfg.EraseInterval <= 0 || !st.recallsArchived || now.Before(st.eraseAt) {
		return false, nil
	}
	cctx, cancel := context.WithDeadline(ctx, st.validUntil)
	defer cancel()
	if err := eraser.EraseRecalled(cctx); err != nil {
		return false, err
	}
	a.logger.InfoContext(ctx, "archive: erasing recalled messages' earlier states from the archive's disk (in the background)")
	st.recallsArchived, st.eraseAt = false, now.Add(a.cfg.EraseInterval)
	return false, nil
}

// renew takes or renews the lease and reports whether this process holds
// it.
func (a *Archiver) renew(ctx context.Context, st *runState, now time.Time) bool {
	cctx, cancel := context.WithTimeout(ctx, min(callTimeout, a.cfg.LeaseTTL/3))
	ok, err := a.src.AcquireLease(cctx, LeaseName, a.holder, a.cfg.LeaseTTL)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	switch {
	case err != nil:
		if st.held {
			a.logger.WarnContext(ctx, "archive: lease renewal failed; archiving stops until it is taken again", slog.Any("err", err))
		}
		ok = false
	case !ok && st.held:
		a.logger.WarnContext(ctx, "archive: lease lost to another process")
	case ok && !st.held:
		a.logger.InfoContext(ctx, "archive: lease acquired; archiving", slog.String("holder", a.holder))
		// The previous holder may have archived recalls it did not erase.
		st.recallsArchived = true
	}
	st.held = ok
	a.m.Leader(ok)
	if ok {
		st.validUntil = now.Add(a.cfg.LeaseTTL)
		st.renewAt = now.Add(a.cfg.LeaseTTL / 3)
	}
	return ok
}

// batch archives the oldest outbox entries, at most BatchSize, and returns
// how many it read. Every call is bounded by the lease's validity, so no
// write outlives it.
func (a *Archiver) batch(ctx context.Context, st *runState) (int, error) {
	start := time.Now()
	bctx, cancel := context.WithDeadline(ctx, st.validUntil)
	defer cancel()
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(bctx, callTimeout) }

	cctx, ccancel := call()
	es, err := a.src.ReadOutbox(cctx, a.cfg.BatchSize)
	ccancel()
	if err != nil {
		return 0, err
	}
	if len(es) < a.cfg.BatchSize || start.Sub(st.lagAt) >= lagEvery {
		a.measureLag(bctx, st, es, start)
	}
	if len(es) == 0 {
		return 0, nil
	}
	keys := make([]storage.MessageKey, len(es))
	ids := make([]int64, len(es))
	for i, e := range es {
		keys[i], ids[i] = e.Key, e.ID
	}
	cctx, ccancel = call()
	// A key whose message is gone loads nothing and is acked all the
	// same. (A trim never passes a message with an entry, but the store
	// is the judge of what exists.)
	msgs, err := a.src.LoadMessages(cctx, keys)
	ccancel()
	if err != nil {
		return 0, err
	}
	if len(msgs) > 0 {
		cctx, ccancel = call()
		err = a.dst.ArchiveMessages(cctx, msgs)
		ccancel()
		if err != nil {
			return 0, err
		}
		for _, r := range msgs {
			if !r.Message.RecalledAt.IsZero() {
				st.recallsArchived = true
				break
			}
		}
	}
	cctx, ccancel = call()
	err = a.src.AckOutbox(cctx, ids)
	ccancel()
	if err != nil {
		// The batch is archived but will be read again: harmless.
		return 0, err
	}
	a.m.Archived(len(msgs), time.Since(start))
	if a.logger.Enabled(ctx, slog.LevelDebug) {
		a.logger.DebugContext(ctx, "archive: batch archived", slog.Int("entries", len(es)), slog.Int("messages", len(msgs)))
	}
	return len(es), nil
}

// measureLag records the outbox lag. A read shorter than a batch was the
// whole outbox, oldest first, so only a full one needs a query.
func (a *Archiver) measureLag(ctx context.Context, st *runState, es []storage.OutboxEntry, now time.Time) {
	st.lagAt = now
	n, oldest := len(es), time.Time{}
	if n > 0 {
		oldest = es[0].EnqueuedAt
	}
	if n >= a.cfg.BatchSize {
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		var err error
		n, oldest, err = a.src.OutboxLag(cctx)
		cancel()
		if err != nil {
			return // the batch itself will tell
		}
	}
	age := time.Duration(0)
	if !oldest.IsZero() {
		age = max(now.Sub(oldest), 0)
	}
	a.m.Lag(n, age)
}

// failed records a failed step and returns the backoff before the next,
// never past the lease's renewal.
func (a *Archiver) failed(ctx context.Context, st *runState, what string, err error) time.Duration {
	if ctx.Err() != nil {
		return 0 // Run returns
	}
	a.m.BatchFailed()
	st.backoff = min(max(2*st.backoff, minBackoff), maxBackoff)
	a.logger.WarnContext(ctx, "archive: "+what+" failed; retrying", slog.Any("err", err), slog.Duration("backoff", st.backoff))
	return max(min(st.backoff, time.Until(st.renewAt)), 0)
}

// release gives the lease up when Run ends, so another process takes
// over at once instead of after LeaseTTL.
func (a *Archiver) release(ctx context.Context, st *runState) {
	if !st.held {
		return
	}
	a.m.Leader(false)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	if err := a.src.ReleaseLease(cctx, LeaseName, a.holder); err != nil {
		a.logger.WarnContext(ctx, "archive: releasing the lease failed; another process takes over when it expires", slog.Any("err", err))
		return
	}
	a.logger.InfoContext(ctx, "archive: lease released")
}
