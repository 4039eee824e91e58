package realsvc_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// TestPostgres starts a server, uses a fresh schema and a fresh database,
// and stops it (twice: Stop is idempotent).
func TestPostgres(t *testing.T) {
	t.Parallel()
	start := time.Now()
	p, err := realsvc.StartPostgres()
	require.NoError(t, err)
	t.Logf("postgres ready on port %d in %v", p.Port(), time.Since(start))

	for _, dsn := range []string{p.NewSchema(t), p.NewDatabase(t)} {
		conn, err := pgx.Connect(t.Context(), dsn)
		require.NoError(t, err)
		_, err = conn.Exec(t.Context(), `CREATE TABLE x (id int PRIMARY KEY)`)
		require.NoError(t, err)
		var n int
		require.NoError(t, conn.QueryRow(t.Context(), `SELECT count(*) FROM x`).Scan(&n))
		require.Zero(t, n)
		require.NoError(t, conn.Close(t.Context()))
	}

	start = time.Now()
	require.NoError(t, p.Stop())
	require.NoError(t, p.Stop())
	t.Logf("postgres stopped in %v", time.Since(start))
}
