package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const benchOutput = `goos: linux
goarch: amd64
pkg: github.com/parley-im/parley/server/hub
cpu: Some CPU @ 2GHz
BenchmarkDeliverToUser-2   	 7000000	       157.0 ns/op	       8 B/op	       1 allocs/op
some log line
pkg: github.com/parley-im/parley/server/route
BenchmarkEntry/encode-2    	   15326	     94322 ns/op	       368.4 ns/msg	   74312 B/op	       4 allocs/op
PASS
`

func TestParseBench(t *testing.T) {
	t.Parallel()
	rs := parseBench(benchOutput)
	require.Len(t, rs, 2)
	require.Equal(t, "server/hub", rs[0].pkg)
	require.Equal(t, "BenchmarkDeliverToUser", rs[0].name)
	require.Equal(t, []metric{{157, "ns/op"}, {8, "B/op"}, {1, "allocs/op"}}, rs[0].metrics)
	require.Equal(t, "BenchmarkEntry/encode", rs[1].name)
	require.Equal(t, metric{368.4, "ns/msg"}, rs[1].metrics[1])
	require.Equal(t, "Some CPU @ 2GHz", benchCPU(benchOutput))
}

func TestRewritesOnlyTheGeneratedSection(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	doc := filepath.Join(dir, "benchmarks.md")
	require.NoError(t, os.WriteFile(doc, []byte("# Benchmarks\n\nIntro.\n\n## Hand-written\n\n| a | b |\n"), 0o644))
	micro := filepath.Join(dir, "micro.txt")
	require.NoError(t, os.WriteFile(micro, []byte(benchOutput), 0o644))
	load := filepath.Join(dir, "p2p.json")
	require.NoError(t, os.WriteFile(load, []byte(`{"scenario":"p2p","msgs_per_sec":12345.6,"p50_ms":3.2,"p99_ms":41,"p999_ms":80,"sent":100,"delivered":100,"lost":0,"duplicates":0,"server_rss_bytes":104857600,"transport":"connect"}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "p2p.cmd"), []byte("go run ./loadtest p2p -spawn embedded\n"), 0o644))

	args := []string{"-doc", doc, "-micro", micro, "-micro-cmd", "go test -bench .", "-load", load, "-commit", "abc1234", "-date", "2026-11-28"}
	require.NoError(t, run(args, os.Stderr))
	first, err := os.ReadFile(doc)
	require.NoError(t, err)
	s := string(first)
	require.Contains(t, s, "## Hand-written\n\n| a | b |", "hand-written parts stay")
	require.Contains(t, s, "| `server/hub` | DeliverToUser | 157 ns/op, 8 B/op, 1 allocs/op |")
	require.Contains(t, s, "| p2p | `go run ./loadtest p2p -spawn embedded` | 12,346 | 3.2 | 41 | 80 | 100 | 100 | 0 | 0 | 100.0 MiB | transport=connect |")
	require.Contains(t, s, "commit `abc1234`")
	require.Less(t, strings.Index(s, beginMarker), strings.Index(s, "## Hand-written"), "the section goes before the hand-written ones")

	// A second run replaces the section instead of adding another.
	require.NoError(t, run(append(args[:len(args)-2], "-date", "2026-11-29"), os.Stderr))
	second, err := os.ReadFile(doc)
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(string(second), beginMarker))
	require.Contains(t, string(second), "2026-11-29")
	require.NotContains(t, string(second), "2026-11-28")
}
