package report_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/loadtest/internal/check"
	"github.com/parley-im/parley/loadtest/internal/report"
	"github.com/parley-im/parley/loadtest/internal/stats"
)

// The JSON field names are a contract with docs and `make bench`.
func TestJSONFields(t *testing.T) {
	t.Parallel()
	h := stats.NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond / 10)
	}
	r := &report.Result{Scenario: "p2p", Transport: "connect", MsgsPerSec: 1234.5, ServerRSSBytes: 42 << 20, Rate: 1500}
	r.SetHeadline("test", h.Summary())
	r.SetLatency("ack", h.Summary())
	r.SetCheck(check.Report{Counts: check.Counts{Sent: 10, Acked: 9, Failed: 1, Delivered: 18, Expected: 18, Duplicates: 2}, ViolationCount: 1, Violations: []string{"v"}})

	path := filepath.Join(t.TempDir(), "r.json")
	require.NoError(t, r.WriteJSON(path))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	for _, field := range []string{"scenario", "sent", "delivered", "lost", "duplicates", "msgs_per_sec", "p50_ms", "p99_ms", "p999_ms", "server_rss_bytes",
		"p90_ms", "transport", "acknowledged", "failed", "rate", "latencies", "pass", "duration_sec"} {
		require.Contains(t, got, field)
	}
	require.Equal(t, "p2p", got["scenario"])
	require.InDelta(t, 10, got["sent"], 0)
	require.InDelta(t, 2, got["duplicates"], 0)
	require.InDelta(t, 0, got["lost"], 0)
	require.InDelta(t, 1234.5, got["msgs_per_sec"], 0)
	require.InDelta(t, 50, got["p50_ms"], 0.1)
	require.InDelta(t, 99, got["p99_ms"], 0.1)
	require.InDelta(t, 99.9, got["p999_ms"], 0.1)
	require.InDelta(t, 42<<20, got["server_rss_bytes"], 0)
	require.InDelta(t, 99, got["latencies"].(map[string]any)["ack"].(map[string]any)["p99_ms"], 0.1)
}

func TestMarkdown(t *testing.T) {
	t.Parallel()
	r := &report.Result{Scenario: "conns", Transport: "grpc", Conns: 15000, BytesPerConn: 20.5 * 1024, ConnectRate: 2500,
		LimitHit: "stopped at 15000", ServerSamples: []report.Sample{{At: "before", RSSBytes: 1 << 20}}}
	var b strings.Builder
	require.NoError(t, r.Markdown(&b))
	out := b.String()
	require.Contains(t, out, "| streams held | 15,000 |")
	require.Contains(t, out, "| server memory per stream (RSS) | 20.5 KiB |")
	require.Contains(t, out, "| limit hit | stopped at 15000 |")
	require.Contains(t, out, "| **lost** | **0** |")
}
