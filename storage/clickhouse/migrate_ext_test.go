package clickhouse_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/clickhouse"
)

// latestVersion is the newest migration in migrations/.
const latestVersion = 2

func TestMigrate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	t.Run("fresh_database_gets_every_version", func(t *testing.T) {
		t.Parallel()
		db, name := newDB(t)
		v, err := db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.EqualValues(t, latestVersion, v)
		rows, err := server.Query(ctx, "SELECT groupArray(version) FROM (SELECT version FROM "+name+".schema_migrations ORDER BY version)")
		require.NoError(t, err)
		require.Equal(t, "[1,2]", rows, "one record per version")
		engine, err := server.Query(ctx, "SELECT engine FROM system.tables WHERE database = '"+name+"' AND name = 'messages'")
		require.NoError(t, err)
		require.Equal(t, "ReplacingMergeTree", engine)
	})

	t.Run("second_open_applies_nothing", func(t *testing.T) {
		t.Parallel()
		_, name := newDB(t)
		db2 := open(t, testConfig(server, name))
		v, err := db2.SchemaVersion(ctx)
		require.NoError(t, err)
		require.EqualValues(t, latestVersion, v)
		n, err := server.Query(ctx, "SELECT count() FROM "+name+".schema_migrations")
		require.NoError(t, err)
		require.Equal(t, "2", n, "a second Open records no version again")
	})

	t.Run("rerun_after_crash_before_record", func(t *testing.T) {
		t.Parallel()
		// The table exists but its version was never recorded, as after a
		// crash between the two: Open runs the statements again.
		_, name := newDB(t)
		require.NoError(t, server.Exec(ctx, "TRUNCATE TABLE "+name+".schema_migrations"))
		db := open(t, testConfig(server, name))
		v, err := db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.EqualValues(t, latestVersion, v)
	})

	t.Run("newer_schema_refused", func(t *testing.T) {
		t.Parallel()
		_, name := newDB(t)
		require.NoError(t, server.Exec(ctx, "INSERT INTO "+name+".schema_migrations (version, name, applied_at) SELECT 999, 'future', now()"))
		_, err := clickhouse.Open(ctx, testConfig(server, name))
		require.ErrorContains(t, err, "schema version 999 is newer than this binary's 2")
	})

	t.Run("missing_database", func(t *testing.T) {
		t.Parallel()
		_, err := clickhouse.Open(ctx, testConfig(server, "no_such_database"))
		require.ErrorContains(t, err, "clickhouse: open")
		require.ErrorContains(t, err, "no_such_database")
	})

	t.Run("features_of_this_server", func(t *testing.T) {
		t.Parallel()
		db, name := newDB(t)
		version, err := server.Query(ctx, "SELECT version()")
		require.NoError(t, err)
		f := db.Features()
		require.Equal(t, version, f.Version)
		create, err := server.Query(ctx, "SHOW CREATE TABLE "+name+".messages")
		require.NoError(t, err)
		if f.TokenIndex {
			require.Contains(t, create, "INDEX body_tokens")
		} else {
			require.NotContains(t, create, "INDEX", "no data-skipping index on a server without them")
		}
	})
}
