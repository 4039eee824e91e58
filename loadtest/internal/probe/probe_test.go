package probe_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/loadtest/internal/probe"
)

const exposition = `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 1234
# HELP go_gc_duration_seconds A summary of the wall-time pause.
go_gc_duration_seconds{quantile="0.5"} 3.2e-05
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 2.68435456e+08
process_resident_memory_bytes_extra 1
`

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	m, err := probe.ParseMetrics(strings.NewReader(exposition), "go_goroutines", "process_resident_memory_bytes")
	require.NoError(t, err)
	require.Equal(t, map[string]float64{"go_goroutines": 1234, "process_resident_memory_bytes": 268435456}, m)
}

func TestSample(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, exposition)
	}))
	defer srv.Close()

	s, err := probe.Target{MetricsURLs: []string{srv.URL, srv.URL}}.Sample(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(2468), s.Goroutines, "a cluster's processes add up")
	require.Equal(t, int64(2*268435456), s.RSSBytes)

	// /proc wins for RSS when the process is here.
	s, err = probe.Target{MetricsURLs: []string{srv.URL}, PIDs: []int{os.Getpid()}}.Sample(t.Context())
	require.NoError(t, err)
	require.Equal(t, int64(1234), s.Goroutines)
	require.Positive(t, s.RSSBytes)
	require.NotEqual(t, int64(268435456), s.RSSBytes)
	require.Positive(t, s.OpenFiles)
	require.Positive(t, s.FileLimit)

	// Open files add up over processes, but the limit is per process.
	one := s.OpenFiles
	s, err = probe.Target{PIDs: []int{os.Getpid(), os.Getpid()}}.Sample(t.Context())
	require.NoError(t, err)
	require.InDelta(t, 2*one, s.OpenFiles, 8, "summed over the processes")
	require.InDelta(t, one, s.MostOpenFiles, 4, "the fullest single process")
}
