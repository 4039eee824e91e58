package realsvc_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// TestClickHouse starts a server, creates a database with a table,
// restarts the server (same ports, the table's rows survive), halts it
// (queries fail), restarts it again, and stops it twice.
func TestClickHouse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	start := time.Now()
	c, err := realsvc.StartClickHouse()
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Stop()) })
	t.Logf("clickhouse ready on %s in %v", c.Addr(), time.Since(start))

	version, err := c.Query(ctx, "SELECT version()")
	require.NoError(t, err)
	require.NotEmpty(t, version)

	db := c.NewDatabase(t)
	require.NoError(t, c.Exec(ctx, "CREATE TABLE "+db+".t (x UInt32) ENGINE = MergeTree() ORDER BY x"))
	require.NoError(t, c.Exec(ctx, "INSERT INTO "+db+".t SELECT number FROM system.numbers LIMIT 3"))

	addr, httpAddr := c.Addr(), c.HTTPAddr()
	t0 := time.Now()
	require.NoError(t, c.Restart())
	t.Logf("restart %v", time.Since(t0))
	require.Equal(t, addr, c.Addr(), "restart keeps the native port")
	require.Equal(t, httpAddr, c.HTTPAddr(), "restart keeps the HTTP port")
	n, err := c.Query(ctx, "SELECT count() FROM "+db+".t")
	require.NoError(t, err)
	require.Equal(t, "3", n, "rows survive a restart")

	t0 = time.Now()
	require.NoError(t, c.Halt())
	t.Logf("halt %v", time.Since(t0))
	_, err = c.Query(ctx, "SELECT 1")
	require.Error(t, err, "a halted server answers nothing")
	require.NoError(t, c.Restart())
	n, err = c.Query(ctx, "SELECT count() FROM "+db+".t")
	require.NoError(t, err)
	require.Equal(t, "3", n, "rows survive a halt")

	require.NoError(t, c.Stop())
	require.NoError(t, c.Stop(), "Stop is idempotent")
	require.Error(t, c.Restart(), "no restart after Stop")
	require.Error(t, c.Halt(), "no halt after Stop")
}
