package embedded

import (
	"context"
	"crypto/rand"
	"database/sql"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"
)

// migrationFS holds the schema, one file per version: NNNN_name.sql,
// applied in version order. A released file is never edited; a change is
// a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migration is one schema version.
type migration struct {
	version int
	name    string
	sql     string
}

// migrate brings the database up to the newest schema and returns its
// epoch. Everything happens in one transaction, so a failed Open leaves the
// file as it was; concurrent Opens of the same file serialise on the write
// lock and the second finds nothing to do.
func migrate(ctx context.Context, db *sql.DB) (string, error) {
	migs, err := loadMigrations()
	if err != nil {
		return "", fmt.Errorf("embedded: migrate: %w", err)
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return "", migrateErr(ctx, err)
	}
	defer func() { _ = tx.Rollback() }()

	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		name       TEXT NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return "", migrateErr(ctx, err)
	}
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return "", migrateErr(ctx, err)
	}
	if latest := migs[len(migs)-1].version; current > latest {
		return "", fmt.Errorf("embedded: migrate: schema version %d is newer than this binary's %d", current, latest)
	}
	now := time.Now().UnixMilli()
	for _, m := range migs {
		if m.version <= current {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return "", migrateErr(ctx, fmt.Errorf("%04d_%s: %w", m.version, m.name, err))
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.version, m.name, now); err != nil {
			return "", migrateErr(ctx, err)
		}
	}

	epoch, err := newEpoch()
	if err != nil {
		return "", fmt.Errorf("embedded: migrate: %w", err)
	}
	// The first Open stores its epoch; every later Open keeps the stored
	// one.
	if _, err := tx.ExecContext(ctx,
		`INSERT INTO meta (key, value) VALUES ('epoch', ?) ON CONFLICT (key) DO NOTHING`, epoch); err != nil {
		return "", migrateErr(ctx, err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = 'epoch'`).Scan(&epoch); err != nil {
		return "", migrateErr(ctx, err)
	}
	if err := tx.Commit(); err != nil {
		return "", migrateErr(ctx, err)
	}
	return epoch, nil
}

// loadMigrations parses the embedded files, sorted by version. Versions
// must be unique and positive.
func loadMigrations() ([]migration, error) {
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	ms := make([]migration, 0, len(names))
	seen := make(map[int]string, len(names))
	for _, n := range names {
		base := strings.TrimSuffix(path.Base(n), ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: name is not NNNN_name.sql", n)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("migration %s: version %d already used by %s", n, v, prev)
		}
		seen[v] = n
		b, err := migrationFS.ReadFile(n)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	if len(ms) == 0 {
		return nil, errors.New("no migrations embedded")
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// newEpoch returns 128 random bits in hex.
func newEpoch() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func migrateErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("embedded: migrate: %w", translate(err))
}
