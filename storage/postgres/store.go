// Package postgres implements storage.Store on PostgreSQL (15 or later)
// with pgx/v5 and its pool. It is Parley's clustered system of record:
// several server processes share one database, and the per-conversation
// seq stays gapless because every append takes the conversation's row lock.
//
// The schema lives in the first schema of the connection's search_path
// (set it in the DSN to share a database between deployments or tests),
// and is migrated at Open under an advisory lock.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parley-im/parley/storage"
)

// Config configures the PostgreSQL store.
type Config struct {
	// DSN is a libpq connection string or URL, e.g.
	// "postgres://parley@db:5432/parley?sslmode=verify-full". Parameters
	// pgx does not know (search_path, application_name) are sent to the
	// server as session settings.
	DSN string
	// MaxConns bounds the pool; 0 means pgx's default (the larger of 4
	// and the number of CPUs).
	MaxConns int32
}

// Store is a storage.Store on PostgreSQL. It is safe for concurrent use.
// Open creates it; Close releases it.
type Store struct {
	pool  *pgxpool.Pool
	epoch string

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ storage.Store = (*Store)(nil)

// Open connects to cfg.DSN, applies pending schema migrations (see
// Migrate) and returns the store. The caller must Close it. Open fails if
// the schema is newer than this binary knows. ctx bounds Open only.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		// The parse error may quote the DSN, password included.
		return nil, errors.New("postgres: open: invalid DSN")
	}
	if cfg.MaxConns > 0 {
		pcfg.MaxConns = cfg.MaxConns
	}
	if _, set := pcfg.ConnConfig.RuntimeParams["plan_cache_mode"]; !set {
		// Every statement here is an index probe or a primary-key range
		// whatever its parameters, so the generic plan of a prepared
		// statement is as good as a custom one, and replanning the
		// array joins of the append path on every call cost more than
		// executing them.
		pcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_generic_plan"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: open: %w", translate(err))
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		pool.Close()
		return nil, openErr(ctx, err)
	}
	epoch, err := migrate(ctx, conn.Conn())
	conn.Release()
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &Store{pool: pool, epoch: epoch}, nil
}

// Epoch returns the random id generated when the schema was created. It
// never changes for the life of the schema.
func (s *Store) Epoch(ctx context.Context) (string, error) {
	if err := s.check(ctx); err != nil {
		return "", s.fail(ctx, "epoch", err)
	}
	return s.epoch, nil
}

// Close waits for running calls to release their connections, then closes
// the pool. It is idempotent. Calls to any other method after Close return
// an error wrapping storage.ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.pool.Close()
	})
	return nil
}

// check is the preamble of every method: a closed store is unavailable and
// a done context ends the call before it starts.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return storage.ErrUnavailable
	}
	return ctx.Err()
}

// tx runs fn in a read-committed transaction and commits when fn returns
// nil. The returned error is translated and wrapped with op, except ctx's
// own error, which is returned as it is.
func (s *Store) tx(ctx context.Context, op string, fn func(tx pgx.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback(context.WithoutCancel(ctx))
		return s.fail(ctx, op, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	return nil
}

// fail turns err into what a method returns: ctx's error as it is when ctx
// ended the call, otherwise the translated error wrapped with op.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if err == nil {
		return nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	err = translate(err)
	if s.closed.Load() && !storage.IsSentinel(err) {
		err = fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return fmt.Errorf("postgres: %s: %w", op, err)
}

// stamp is t as the store keeps it: millisecond precision, UTC; a zero t
// means now.
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.Truncate(time.Millisecond).UTC()
}

// optTime is an optional time for a nullable column: nil when zero.
func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.Truncate(time.Millisecond).UTC()
	return &u
}

// fromOpt is the inverse of optTime, in UTC.
func fromOpt(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}

// i64 converts a seq for PostgreSQL, saturating at the largest bigint.
func i64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// u64 converts a seq read from PostgreSQL; seqs are never negative.
func u64(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}

// unique returns ids without repeats, in first-seen order.
func unique(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if _, ok := seen[id]; ok {
			continue
		}
		seen[id] = struct{}{}
		out = append(out, id)
	}
	return out
}
