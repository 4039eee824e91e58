// Package clickhouse talks to ClickHouse for the message archive, over
// the native protocol (clickhouse-go/v2).
//
// The archive is the table messages, a ReplacingMergeTree keyed by
// (conversation_id, seq): writing a message again (a replay after a
// crash) or writing a later state of it (an edit, a recall) leaves one
// row per message for readers that use FINAL, the one with the highest
// version. The archive is never the source of truth; it is written from
// the primary store, and every write may be repeated safely.
//
// The schema and queries stay inside what ClickHouse 18.16 (Debian's
// package, which the tests run against) and current releases both
// accept. Open records which newer features the server has (Features)
// and applies the ones the archive uses only there.
package clickhouse

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	ch "github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Defaults for the zero values of Config.
const (
	// DefaultDatabase is Config.Database when it is empty.
	DefaultDatabase = "default"
	// DefaultDialTimeout is Config.DialTimeout when it is 0.
	DefaultDialTimeout = 5 * time.Second
	// DefaultCallTimeout is Config.CallTimeout when it is 0.
	DefaultCallTimeout = 30 * time.Second
)

// Version thresholds of the features Open looks for. They are decided
// by the number version() reports, not by probing with DDL, so Open never
// leaves a half-applied experiment behind.
var (
	// tokenIndexSince is the first release where data-skipping indexes
	// (tokenbf_v1, ngrambf_v1) are production features enabled by default
	// (ClickHouse PR #7974, released in 20.1); before that they needed
	// allow_experimental_data_skipping_indices, and 18.16 has none.
	tokenIndexSince = serverVersion{20, 1}
	// ttlSince is the first release with table and column TTL (19.6).
	ttlSince = serverVersion{19, 6}
)

// Config configures Open.
type Config struct {
	// Addrs are the servers' native-protocol host:port (port 9000, or 9440
	// with TLS). Required. With several, a connection goes to the first
	// that answers, in order.
	Addrs []string `yaml:"addrs" env:"ADDRS"`
	// Database holds the archive's tables. It must exist (Open does not
	// create databases: that needs rights the archive should not have).
	// Empty means DefaultDatabase.
	Database string `yaml:"database" env:"DATABASE"`
	// Username and Password authenticate; an empty Username means the
	// server's "default" user.
	Username string `yaml:"username" env:"USERNAME"`
	Password string `yaml:"password" env:"PASSWORD"`
	// TLS connects with TLS, verifying the server's certificate against
	// the system roots.
	TLS bool `yaml:"tls" env:"TLS"`
	// DialTimeout bounds opening one connection; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration `yaml:"dial_timeout" env:"DIAL_TIMEOUT"`
	// CallTimeout bounds every call of DB (each statement of a migration,
	// each write, each read), on top of the caller's ctx; 0 means
	// DefaultCallTimeout.
	CallTimeout time.Duration `yaml:"call_timeout" env:"CALL_TIMEOUT"`
}

// Features are what the connected server supports beyond ClickHouse
// 18.16, decided by its version.
type Features struct {
	// Version is what the server's version() returns, e.g. "18.16.1".
	Version string
	// TokenIndex: data-skipping indexes, including tokenbf_v1 and
	// ngrambf_v1, are available (20.1 and later). Open then adds a token
	// bloom-filter index on the search words (features/).
	TokenIndex bool
	// TTL: table and column TTL clauses are available (19.6 and later).
	// The archive does not use them: a compliance archive keeps
	// everything until an operator decides otherwise.
	TTL bool
}

// DB is a connection pool to the archive's database, with its schema
// migrated. It is safe for concurrent use.
type DB struct {
	conn        driver.Conn
	callTimeout time.Duration
	features    Features
	closed      atomic.Bool
}

// Open connects to the server, checks that it answers, reads its version,
// brings the archive's schema up to date (Migrate) and adds the features
// the server's version has. The error wraps storage.ErrUnavailable when
// the server cannot be reached, and says which step failed. The caller
// must Close the DB.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	if len(cfg.Addrs) == 0 {
		return nil, errors.New("clickhouse: open: Config.Addrs is required")
	}
	if cfg.Database == "" {
		cfg.Database = DefaultDatabase
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = DefaultCallTimeout
	}
	opts := &ch.Options{
		Protocol: ch.Native,
		Addr:     cfg.Addrs,
		Auth: ch.Auth{
			Database: cfg.Database,
			Username: cfg.Username,
			Password: cfg.Password,
		},
		DialTimeout: cfg.DialTimeout,
		// A call's deadline comes from its ctx (CallTimeout); ReadTimeout
		// only backs it up for reads the ctx does not reach.
		ReadTimeout:      cfg.CallTimeout,
		ConnOpenStrategy: ch.ConnOpenInOrder,
		ClientInfo: ch.ClientInfo{Products: []struct {
			Name    string
			Version string
		}{{Name: "parley-archive", Version: "1"}}},
	}
	if cfg.TLS {
		opts.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	conn, err := ch.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("clickhouse: open: %w", err)
	}
	db := &DB{conn: conn, callTimeout: cfg.CallTimeout}
	if err := db.open(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return db, nil
}

// open pings, reads the version and migrates.
func (db *DB) open(ctx context.Context) error {
	cctx, cancel := db.call(ctx)
	err := db.conn.Ping(cctx)
	cancel()
	if err != nil {
		return wrapErr(ctx, "open: ping", err)
	}
	var version string
	cctx, cancel = db.call(ctx)
	err = db.conn.QueryRow(cctx, "SELECT version()").Scan(&version)
	cancel()
	if err != nil {
		return wrapErr(ctx, "open: read version", err)
	}
	db.features, err = featuresOf(version)
	if err != nil {
		return fmt.Errorf("clickhouse: open: %w", err)
	}
	if err := db.migrate(ctx); err != nil {
		return err
	}
	return db.applyFeatures(ctx)
}

// Features reports what the server supports, as read by Open.
func (db *DB) Features() Features { return db.features }

// Close closes the pool. It is idempotent. Calls after Close return
// storage.ErrUnavailable.
func (db *DB) Close() error {
	if db.closed.Swap(true) {
		return nil
	}
	if err := db.conn.Close(); err != nil {
		return fmt.Errorf("clickhouse: close: %w", err)
	}
	return nil
}

// call derives the context of one call: ctx bounded by CallTimeout.
func (db *DB) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, db.callTimeout)
}

// serverVersion is a release's year.month number ("24.8" is {24, 8}).
type serverVersion struct{ major, minor int }

func (v serverVersion) atLeast(w serverVersion) bool {
	return v.major > w.major || (v.major == w.major && v.minor >= w.minor)
}

// featuresOf decides Features from what version() returned
// ("18.16.1", "24.8.4.13").
func featuresOf(version string) (Features, error) {
	parts := strings.SplitN(version, ".", 3)
	if len(parts) < 2 {
		return Features{}, fmt.Errorf("server version %q is not major.minor[.patch]", version)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return Features{}, fmt.Errorf("server version %q is not major.minor[.patch]", version)
	}
	v := serverVersion{major, minor}
	return Features{
		Version:    version,
		TokenIndex: v.atLeast(tokenIndexSince),
		TTL:        v.atLeast(ttlSince),
	}, nil
}
