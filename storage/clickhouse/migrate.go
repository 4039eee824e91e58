package clickhouse

import (
	"context"
	"embed"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/parley-im/parley/storage/internal/schema"
)

// migrationFS holds the schema, one file per version: NNNN_name.sql,
// applied in version order. A released file is never edited; a change is
// a new file. Each file's statements are separated by ';' (not inside
// literals) and must be idempotent: without transactions, a crash between
// a statement and the version's record runs it again. CREATE takes IF NOT
// EXISTS. ADD COLUMN cannot (18.16 refuses IF NOT EXISTS there), so a
// statement "ALTER TABLE t ADD COLUMN c …" adding one column is skipped
// when t has a column c already (addedColumn).
//
//go:embed migrations/*.sql
var migrationFS embed.FS

// The token index added on servers that have one (see
// Features.TokenIndex). It is not a versioned migration: a server
// upgraded to a release with the feature gets it on the next Open. (An
// index on body, the encoded content that nothing searches, was dropped
// before any release: search reads search_words.)
//
//go:embed features/search_tokens.sql
var searchTokensDDL string

// featureIndexes are the indexes applyFeatures adds, by name.
var featureIndexes = []struct{ name, ddl string }{
	{name: "search_tokens", ddl: searchTokensDDL},
}

// addColumnRE matches a statement adding one column: ALTER TABLE t ADD
// COLUMN c, whatever follows.
var addColumnRE = regexp.MustCompile(`(?is)^ALTER\s+TABLE\s+(\w+)\s+ADD\s+COLUMN\s+(\w+)\s`)

// createMigrationsTable records applied versions. Concurrent Opens may
// record a version twice; the highest version is what counts.
const createMigrationsTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    UInt32,
	name       String,
	applied_at DateTime
) ENGINE = MergeTree() ORDER BY version`

// SchemaVersion returns the highest migration version applied to the
// database, 0 for none.
func (db *DB) SchemaVersion(ctx context.Context) (uint32, error) {
	if db.closed.Load() {
		return 0, errClosed("schema version")
	}
	cctx, cancel := db.call(ctx)
	defer cancel()
	var v uint32
	if err := db.conn.QueryRow(cctx, `SELECT max(version) FROM schema_migrations`).Scan(&v); err != nil {
		return 0, wrapErr(ctx, "schema version", err)
	}
	return v, nil
}

// migrate applies the pending migrations, statement by statement, each
// version recorded once its statements have run.
func (db *DB) migrate(ctx context.Context) error {
	migs, err := schema.Load(migrationFS, "migrations/*.sql")
	if err != nil {
		return fmt.Errorf("clickhouse: migrate: %w", err)
	}
	if err := db.exec(ctx, "migrate: create schema_migrations", createMigrationsTable); err != nil {
		return err
	}
	current, err := db.SchemaVersion(ctx)
	if err != nil {
		return fmt.Errorf("clickhouse: migrate: %w", err)
	}
	if latest := migs[len(migs)-1].Version; int(current) > latest {
		return fmt.Errorf("clickhouse: migrate: schema version %d is newer than this binary's %d", current, latest)
	}
	for _, m := range migs {
		if m.Version <= int(current) {
			continue
		}
		op := fmt.Sprintf("migrate: %04d_%s", m.Version, m.Name)
		for i, stmt := range statements(m.SQL) {
			if err := db.migrateStatement(ctx, fmt.Sprintf("%s: statement %d", op, i+1), stmt); err != nil {
				return err
			}
		}
		if err := db.recordVersion(ctx, uint32(m.Version), m.Name); err != nil {
			return wrapErr(ctx, op+": record version", err)
		}
	}
	return nil
}

// migrateStatement runs one statement of a migration, unless it adds a
// column the table has already (a rerun after a crash). Should two Opens
// race to add the column, the loser's error is dropped once the column is
// seen to exist: what the statement was for is done.
func (db *DB) migrateStatement(ctx context.Context, op, stmt string) error {
	table, column := addedColumn(stmt)
	if table == "" {
		return db.exec(ctx, op, stmt)
	}
	has, err := db.hasColumn(ctx, table, column)
	if err != nil {
		return wrapErr(ctx, op+": look for column "+column, err)
	}
	if has {
		return nil
	}
	execErr := db.exec(ctx, op, stmt)
	if execErr == nil {
		return nil
	}
	if has, err := db.hasColumn(ctx, table, column); err == nil && has {
		return nil
	}
	return execErr
}

// hasColumn reports whether table of the connection's database has the
// column.
func (db *DB) hasColumn(ctx context.Context, table, column string) (bool, error) {
	cctx, cancel := db.call(ctx)
	defer cancel()
	var n uint64
	err := db.conn.QueryRow(cctx, `SELECT count() FROM system.columns
		WHERE database = currentDatabase() AND table = ? AND name = ?`, table, column).Scan(&n)
	return n > 0, err
}

// addedColumn returns the table and column of a statement adding one
// column, and empty strings for any other statement.
func addedColumn(stmt string) (table, column string) {
	m := addColumnRE.FindStringSubmatch(stmt)
	if m == nil {
		return "", ""
	}
	return m[1], m[2]
}

// applyFeatures adds what the server's version supports and the table
// does not have yet.
func (db *DB) applyFeatures(ctx context.Context) error {
	if !db.features.TokenIndex {
		return nil
	}
	// system.data_skipping_indices exists only from 21.7: read the
	// table's definition instead.
	cctx, cancel := db.call(ctx)
	var create string
	err := db.conn.QueryRow(cctx, `SHOW CREATE TABLE messages`).Scan(&create)
	cancel()
	if err != nil {
		return wrapErr(ctx, "open: read messages' definition", err)
	}
	for _, idx := range featureIndexes {
		if strings.Contains(create, "INDEX "+idx.name+" ") {
			continue
		}
		if err := db.exec(ctx, "open: add index "+idx.name, strings.Join(statements(idx.ddl), "")); err != nil {
			return err
		}
	}
	return nil
}

// recordVersion inserts one schema_migrations row. Through a batch with
// named columns: INSERT … VALUES over Exec hangs against 18.16.
func (db *DB) recordVersion(ctx context.Context, version uint32, name string) error {
	cctx, cancel := db.call(ctx)
	defer cancel()
	batch, err := db.conn.PrepareBatch(cctx, `INSERT INTO schema_migrations (version, name, applied_at)`)
	if err != nil {
		return err
	}
	defer func() { _ = batch.Abort() }()
	if err := batch.Append(version, name, time.Now()); err != nil {
		return err
	}
	return batch.Send()
}

// exec runs one statement with the call timeout.
func (db *DB) exec(ctx context.Context, op, stmt string) error {
	cctx, cancel := db.call(ctx)
	defer cancel()
	return wrapErr(ctx, op, db.conn.Exec(cctx, stmt))
}

// statements splits a migration file into its statements: comment lines
// ("--") dropped, split at ';', blanks skipped.
func statements(sql string) []string {
	var b strings.Builder
	for line := range strings.Lines(sql) {
		if strings.HasPrefix(strings.TrimSpace(line), "--") {
			continue
		}
		b.WriteString(line)
	}
	var out []string
	for stmt := range strings.SplitSeq(b.String(), ";") {
		if stmt = strings.TrimSpace(stmt); stmt != "" {
			out = append(out, stmt)
		}
	}
	return out
}
