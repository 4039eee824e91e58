package clickhouse_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/clickhouse"
)

// latestVersion is the newest migration in migrations/.
const latestVersion = 3

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
		require.Equal(t, "[1,2,3]", rows, "one record per version")
		cols, err := server.Query(ctx, "SELECT groupArray(name) FROM (SELECT name FROM system.columns WHERE database = '"+name+"' AND table = 'messages' AND name LIKE 'search%' ORDER BY name)")
		require.NoError(t, err)
		require.Equal(t, "['search_text','search_words']", cols, "0003 adds the search columns")
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
		require.Equal(t, "3", n, "a second Open records no version again")
	})

	t.Run("rerun_after_crash_before_record", func(t *testing.T) {
		t.Parallel()
		// The table and columns exist but no version was recorded, as
		// after a crash between the statements and their record: Open
		// runs every statement again, and 0003's ADD COLUMNs (which 18.16
		// cannot write with IF NOT EXISTS) must not fail on the columns
		// they added before.
		_, name := newDB(t)
		require.NoError(t, server.Exec(ctx, "TRUNCATE TABLE "+name+".schema_migrations"))
		db := open(t, testConfig(server, name))
		v, err := db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.EqualValues(t, latestVersion, v)
		in := testMessages("c1", 1, 1)
		require.NoError(t, db.WriteMessages(ctx, in))
		got, err := db.Messages(ctx, "c1", 1, 1, 0)
		require.NoError(t, err)
		require.Equal(t, in[0].SearchText, got[0].SearchText)
	})

	t.Run("rerun_after_crash_inside_0003", func(t *testing.T) {
		t.Parallel()
		// A crash after 0003's first column was added but before the
		// second: the rerun skips the first and adds the second.
		_, name := newDB(t)
		require.NoError(t, server.Exec(ctx, "ALTER TABLE "+name+".messages DROP COLUMN search_words"))
		require.NoError(t, server.Exec(ctx, "ALTER TABLE "+name+".schema_migrations DELETE WHERE version = 3"))
		require.Eventually(t, func() bool {
			n, err := server.Query(ctx, "SELECT count() FROM "+name+".schema_migrations WHERE version = 3")
			return err == nil && n == "0"
		}, 10*time.Second, 10*time.Millisecond, "the mutation deleting version 3's record")
		db := open(t, testConfig(server, name))
		v, err := db.SchemaVersion(ctx)
		require.NoError(t, err)
		require.EqualValues(t, latestVersion, v)
		n, err := server.Query(ctx, "SELECT count() FROM system.columns WHERE database = '"+name+"' AND table = 'messages' AND name = 'search_words'")
		require.NoError(t, err)
		require.Equal(t, "1", n)
	})

	t.Run("newer_schema_refused", func(t *testing.T) {
		t.Parallel()
		_, name := newDB(t)
		require.NoError(t, server.Exec(ctx, "INSERT INTO "+name+".schema_migrations (version, name, applied_at) SELECT 999, 'future', now()"))
		_, err := clickhouse.Open(ctx, testConfig(server, name))
		require.ErrorContains(t, err, "schema version 999 is newer than this binary's 3")
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
			require.NotContains(t, create, "INDEX body_tokens")
			require.Contains(t, create, "INDEX search_tokens")
		} else {
			require.NotContains(t, create, "INDEX", "no data-skipping index on a server without them")
		}
	})
}
