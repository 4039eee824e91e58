package testserver_test

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"connectrpc.com/connect/v2/connecthttp"
	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
	"github.com/parley-im/parley/server/testserver"
	"github.com/stretchr/testify/require"
)

func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }

func TestStart(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	require.True(t, strings.HasPrefix(srv.URL(), "http://127.0.0.1:"), srv.URL())
	require.Equal(t, strings.TrimPrefix(srv.URL(), "http://"), srv.Addr())

	// Every protocol parleyd serves answers over the h2c client.
	for name, opts := range map[string][]connecthttp.Option{
		"connect":  nil,
		"grpc":     {connecthttp.WithGRPC()},
		"grpc_web": {connecthttp.WithGRPCWeb()},
	} {
		t.Run(name, func(t *testing.T) {
			requireServing(t, healthv1connect.NewHealthClient(srv.Client(t, opts...)))
		})
	}
	// The admin endpoints are on a port of their own.
	require.True(t, strings.HasPrefix(srv.AdminURL(), "http://127.0.0.1:"), srv.AdminURL())
	require.NotEqual(t, srv.URL(), srv.AdminURL())
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.AdminURL()+"/readyz", http.NoBody)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req) // HTTP/1.1, as Prometheus and probes speak it
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusOK, res.StatusCode)

	require.NoError(t, srv.Stop())
	require.Contains(t, srv.Output(), "-data-dir "+srv.DataDir())
}

func TestRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv := testserver.Start(t, testserver.WithDataDir(dir))
	require.Equal(t, dir, srv.DataDir())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.NotEmpty(t, entries, "parleyd wrote nothing to its data dir")

	srv.Restart(t)
	requireServing(t, healthv1connect.NewHealthClient(srv.Client(t)))
	require.Equal(t, dir, srv.DataDir())

	// After a crash, Restart brings the server back on the same store.
	srv.Kill()
	srv.Kill() // no-op once stopped
	require.NoError(t, srv.Stop(), "Stop of a killed server is a no-op")
	srv.Restart(t)
	requireServing(t, healthv1connect.NewHealthClient(srv.Client(t)))
	require.FileExists(t, filepath.Join(dir, "parley.db"), "the store is where it was")
}

func TestWithArgs(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, testserver.WithArgs("-log-level", "warn"))
	require.NoError(t, srv.Stop())
	require.Contains(t, srv.Output(), "-log-level warn")
	require.NotContains(t, srv.Output(), "level=INFO")
}

func requireServing(tb testing.TB, client healthv1connect.HealthClient) {
	tb.Helper()
	res, err := client.Check(tb.Context(), &healthv1.HealthCheckRequest{})
	require.NoError(tb, err)
	require.Equal(tb, healthv1.HealthCheckResponse_SERVING, res.GetStatus())
}
