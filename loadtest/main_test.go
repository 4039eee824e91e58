package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/loadtest/internal/spawn"
	"github.com/parley-im/parley/loadtest/internal/worker"
)

func TestMain(m *testing.M) {
	// -procs re-runs this binary as a worker process.
	if os.Getenv(worker.EnvWorker) != "" {
		os.Exit(run(context.Background(), nil, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// TestSmoke runs the smoke scenario against a parleyd it builds and
// starts: over the Go SDK in this process, and over native gRPC from two
// worker processes. Nothing may be lost.
func TestSmoke(t *testing.T) {
	var flags []string
	if raceEnabled {
		flags = []string{"-race"}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	srv, err := spawn.Start(ctx, spawn.Config{Kind: spawn.Embedded, BuildFlags: flags})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, srv.Stop()) })

	for _, tc := range []struct {
		name string
		args []string
	}{
		{name: "connect", args: []string{"-transport", "connect"}},
		{name: "grpc_two_procs", args: []string{"-transport", "grpc", "-procs", "2", "-source-addrs", "127.0.0.2-127.0.0.3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "smoke.json")
			args := append([]string{"smoke", "-server", srv.URLs[0], "-server-pid", strconv.Itoa(srv.PIDs[0]),
				"-duration", "1s", "-json", path}, tc.args...)
			var stdout, stderr bytes.Buffer
			code := run(ctx, args, &stdout, &stderr)
			require.Equal(t, exitPass, code, "stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
			require.Contains(t, stdout.String(), "| **lost** | **0** |")

			b, err := os.ReadFile(path)
			require.NoError(t, err)
			var res struct {
				Scenario       string  `json:"scenario"`
				Transport      string  `json:"transport"`
				Procs          int     `json:"procs"`
				Sent           int64   `json:"sent"`
				Acknowledged   int64   `json:"acknowledged"`
				Delivered      int64   `json:"delivered"`
				Expected       int64   `json:"expected"`
				Lost           int64   `json:"lost"`
				Duplicates     int64   `json:"duplicates"`
				MsgsPerSec     float64 `json:"msgs_per_sec"`
				P50Ms          float64 `json:"p50_ms"`
				P99Ms          float64 `json:"p99_ms"`
				ServerRSSBytes int64   `json:"server_rss_bytes"`
				Pass           bool    `json:"pass"`
			}
			require.NoError(t, json.Unmarshal(b, &res))
			require.True(t, res.Pass)
			require.Equal(t, "smoke", res.Scenario)
			require.Zero(t, res.Lost)
			require.Zero(t, res.Duplicates)
			// 3 pairs at 100 msgs/s for 1 s, 20 group messages, 300 missed.
			require.Equal(t, int64(100+20+300), res.Sent)
			require.Equal(t, res.Sent, res.Acknowledged)
			require.Equal(t, res.Expected, res.Delivered)
			// Every 1:1 message reaches 2 devices, every group message 8,
			// every missed one 2; plus each group's creation notice.
			require.Equal(t, int64(100*2+(20+1)*8+300*2), res.Delivered)
			require.Positive(t, res.MsgsPerSec)
			require.Positive(t, res.P50Ms)
			require.GreaterOrEqual(t, res.P99Ms, res.P50Ms)
			require.Positive(t, res.ServerRSSBytes)
			if tc.name == "grpc_two_procs" {
				require.Equal(t, "grpc", res.Transport)
				require.Equal(t, 2, res.Procs)
			}
		})
	}
}

func TestFlags(t *testing.T) {
	t.Parallel()
	var stderr bytes.Buffer
	o, err := parseFlags([]string{"group", "-server", "http://127.0.0.1:8080", "-source-addrs", "127.0.0.2-127.0.0.4,127.0.0.9"}, &stderr)
	require.NoError(t, err)
	require.Equal(t, 100, o.GroupSize, "scenario default")
	require.InDelta(t, 10, o.Rate, 0, "scenario default")
	require.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.3"), netip.MustParseAddr("127.0.0.4"), netip.MustParseAddr("127.0.0.9")}, o.SourceAddrs)

	o, err = parseFlags([]string{"group", "-spawn", "embedded", "-rate", "50"}, &stderr)
	require.NoError(t, err)
	require.InDelta(t, 50, o.Rate, 0, "an explicit flag beats the scenario default")

	for _, bad := range [][]string{
		{},
		{"nosuch", "-spawn", "embedded"},
		{"p2p"},
		{"p2p", "-server", "http://10.0.0.1:8080"},
		{"p2p", "-server", "http://example.com"},
		{"p2p", "-spawn", "embedded", "-source-addrs", "10.0.0.1"},
		{"p2p", "-spawn", "embedded", "-server", "http://127.0.0.1:1"},
		{"p2p", "-spawn", "docker"},
		{"p2p", "-spawn", "embedded", "-transport", "websocket"},
	} {
		_, err := parseFlags(bad, &stderr)
		require.Error(t, err, "%q", bad)
	}
}
