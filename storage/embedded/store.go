// Package embedded implements storage.Store on one SQLite file, with the
// pure-Go driver modernc.org/sqlite. It is Parley's single-node default:
// nothing to install, nothing to run beside the server.
//
// All writes go through one connection (SQLite admits one writer at a time
// anyway, and a single connection turns lock contention into an ordered
// queue); reads use a separate pool, so in WAL mode they never wait behind a
// write batch.
package embedded

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/storage"

	// The driver registers itself as "sqlite"; errors.go uses its error type.
	_ "modernc.org/sqlite"
)

const (
	// busyTimeout bounds how long a connection waits for a lock held by
	// another connection (the writer checkpointing, another process) before
	// failing with SQLITE_BUSY, which is reported as storage.ErrUnavailable.
	busyTimeout = 5 * time.Second

	// minReadConns is the read pool's lower bound; reads are short, so a
	// few connections per core are enough.
	minReadConns = 4
)

// Config configures the embedded store.
type Config struct {
	// Path is the SQLite database file. It and its parent directory are
	// created when missing. The server passes <data-dir>/parley.db. It
	// must be a plain file path: no "file:" URI, no '?', not ":memory:".
	// It is derived from the data directory, so it has no setting of its
	// own in parleyd's configuration.
	Path string
}

// Store is a storage.Store on a SQLite file. It is safe for concurrent use.
// Open creates it; Close releases it.
type Store struct {
	// w is the single write connection: every transaction that writes runs
	// here, so transactions never contend for SQLite's write lock inside
	// this process.
	w *sql.DB
	// r is the read pool. Its connections are query_only.
	r *sql.DB
	// ws are the hot-path statements, prepared once on w and bound to each
	// write transaction with Tx.StmtContext.
	ws writeStmts
	// ck checkpoints the WAL on a connection of its own.
	ck *checkpointer

	epoch string

	closed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

var _ storage.Store = (*Store)(nil)

// Open opens (creating if needed) the database at cfg.Path, applies pending
// schema migrations in one transaction and returns the store. The caller
// must Close it. Open fails if the file is not a SQLite database, or its
// schema is newer than this binary knows. ctx bounds Open only.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" {
		return nil, errors.New("embedded: open: empty path")
	}
	if cfg.Path == ":memory:" || strings.HasPrefix(cfg.Path, "file:") || strings.ContainsRune(cfg.Path, '?') {
		return nil, fmt.Errorf("embedded: open: %q is not a plain file path", cfg.Path)
	}
	if err := os.MkdirAll(filepath.Dir(cfg.Path), 0o750); err != nil {
		return nil, fmt.Errorf("embedded: open: %w", err)
	}

	w, err := openDB(cfg.Path, roleWriter, 1)
	if err != nil {
		return nil, err
	}
	epoch, err := migrate(ctx, w)
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	r, err := openDB(cfg.Path, roleReader, max(minReadConns, 2*runtime.GOMAXPROCS(0)))
	if err != nil {
		_ = w.Close()
		return nil, err
	}
	ck, err := openDB(cfg.Path, roleCheckpointer, 1)
	if err != nil {
		_ = r.Close()
		_ = w.Close()
		return nil, err
	}
	for _, db := range []*sql.DB{r, ck} {
		if err := db.PingContext(ctx); err != nil {
			_ = errors.Join(ck.Close(), r.Close(), w.Close())
			return nil, fmt.Errorf("embedded: open: %w", translate(err))
		}
	}

	s := &Store{w: w, r: r, epoch: epoch}
	if err := s.ws.prepare(ctx, w); err != nil {
		_ = errors.Join(s.ws.close(), ck.Close(), r.Close(), w.Close())
		return nil, fmt.Errorf("embedded: open: %w", translate(err))
	}
	s.ck = startCheckpointer(ck)
	return s, nil
}

// Epoch returns the random id generated when the database file was
// created. It never changes for the life of the file.
func (s *Store) Epoch(ctx context.Context) (string, error) {
	if err := s.check(ctx); err != nil {
		return "", s.fail(ctx, "epoch", err)
	}
	return s.epoch, nil
}

// Close waits for running calls, then releases the database. It is
// idempotent: later calls return the first call's result. Calls to any
// other method after Close return an error wrapping storage.ErrUnavailable.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.closeErr = errors.Join(s.ck.stop(), s.ws.close(), s.r.Close(), s.w.Close())
		if s.closeErr != nil {
			s.closeErr = fmt.Errorf("embedded: close: %w", s.closeErr)
		}
	})
	return s.closeErr
}

// check is the preamble of every method: a closed store is unavailable and
// a done context ends the call before it starts.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return storage.ErrUnavailable
	}
	return ctx.Err()
}

// write runs fn in a write transaction (BEGIN IMMEDIATE on the single write
// connection) and commits when fn returns nil. The returned error is
// translated and wrapped with op, except ctx's own error, which is returned
// as it is.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) error) error {
	if err := s.check(ctx); err != nil {
		return s.fail(ctx, op, err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return s.fail(ctx, op, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return s.fail(ctx, op, err)
	}
	if err := tx.Commit(); err != nil {
		return s.fail(ctx, op, err)
	}
	s.ck.notify()
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
	if s.closed.Load() && !storage.IsSentinel(err) {
		err = fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return fmt.Errorf("embedded: %s: %w", op, translate(err))
}

// role is what a connection pool is for.
type role int

const (
	roleWriter role = iota
	roleReader
	roleCheckpointer
)

// openDB opens a pool of at most n connections to path, configured for r.
// Connections are kept for the life of the pool: opening one is dear, and
// the writer's prepared statements live on its connection.
func openDB(path string, r role, n int) (*sql.DB, error) {
	db, err := sql.Open("sqlite", dsn(path, r))
	if err != nil {
		return nil, fmt.Errorf("embedded: open: %w", err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	return db, nil
}

// dsn builds the driver's connection string. Every connection uses WAL, so
// readers and the writer do not block each other.
//
// synchronous=NORMAL: in WAL mode a commit appends to the WAL without an
// fsync; the WAL is fsynced at checkpoints. A committed transaction is in the
// OS page cache when Commit returns, so it survives a crash or SIGKILL of
// the server process: an acknowledged send is never lost that way
// (TestSurvivesSIGKILL). A power loss or kernel crash may lose the
// transactions committed since the last checkpoint (the database stays
// consistent; its history just ends earlier). FULL would fsync on every
// commit and cap the send rate at the disk's fsync rate; for a single-node
// deployment NORMAL is the usual trade.
func dsn(path string, r role) string {
	q := fmt.Sprintf("_busy_timeout=%d&_journal_mode=WAL&_synchronous=NORMAL&_foreign_keys=1",
		busyTimeout.Milliseconds())
	switch r {
	case roleWriter:
		// BEGIN IMMEDIATE takes the write lock up front, so a transaction
		// never fails halfway when upgrading from a read lock. The
		// checkpointer keeps the WAL short; see checkpoint.go.
		q += fmt.Sprintf("&_txlock=immediate&_pragma=wal_autocheckpoint(%d)&_pragma=journal_size_limit(%d)",
			writerAutoCheckpoint, walSizeLimit)
	case roleReader:
		q += "&_query_only=1"
	case roleCheckpointer:
		q += "&_pragma=wal_autocheckpoint(0)"
	}
	return path + "?" + q
}

// ms stores a time as unix milliseconds; the zero time is 0.
func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// fromMS is the inverse of ms, in UTC.
func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}

// stamp is t as the store keeps it: millisecond precision, UTC; a zero t
// means now.
func stamp(t time.Time) time.Time {
	if t.IsZero() {
		t = time.Now()
	}
	return t.Truncate(time.Millisecond).UTC()
}

// i64 converts a seq for SQLite, saturating at the largest INTEGER.
func i64(u uint64) int64 {
	if u > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(u)
}

// u64 converts a seq read from SQLite; seqs are never negative.
func u64(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}
