package embedded

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"time"

	"github.com/parley-im/parley/storage/internal/schema"
)

// migrationFS holds the schema, one file per version: NNNN_name.sql,
// applied in version order. A released file is never edited; a change is
// a new file.
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// migrate brings the database up to the newest schema and returns its
// epoch. Everything happens in one transaction, so a failed Open leaves the
// file as it was; concurrent Opens of the same file serialise on the write
// lock and the second finds nothing to do.
func migrate(ctx context.Context, db *sql.DB) (string, error) {
	migs, err := schema.Load(migrationFS, "migrations/*.sql")
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
	if latest := migs[len(migs)-1].Version; current > latest {
		return "", fmt.Errorf("embedded: migrate: schema version %d is newer than this binary's %d", current, latest)
	}
	now := time.Now().UnixMilli()
	for _, m := range migs {
		if m.Version <= current {
			continue
		}
		if _, err := tx.ExecContext(ctx, m.SQL); err != nil {
			return "", migrateErr(ctx, fmt.Errorf("%04d_%s: %w", m.Version, m.Name, err))
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
			m.Version, m.Name, now); err != nil {
			return "", migrateErr(ctx, err)
		}
	}

	epoch, err := schema.NewEpoch()
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

func migrateErr(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	return fmt.Errorf("embedded: migrate: %w", translate(err))
}
