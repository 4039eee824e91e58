// Package probe reads a server's resident memory, goroutine count and open
// files: from its Prometheus metrics (process_resident_memory_bytes and
// go_goroutines, the Go client's standard collectors) and from
// /proc/<pid> when the process runs on this machine.
package probe

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Target names where to read a server's numbers; for a cluster, every
// process (the numbers are summed). The zero value reads nothing.
type Target struct {
	// MetricsURLs are Prometheus text endpoints, e.g.
	// http://127.0.0.1:9090/metrics.
	MetricsURLs []string
	// PIDs are server processes on this machine.
	PIDs []int
	// Client fetches the metrics; nil means a client with a 5 s timeout.
	Client *http.Client
}

// Sample is what Target.Sample read. A field is -1 when no source had it.
type Sample struct {
	RSSBytes   int64
	Goroutines int64
	// OpenFiles is summed over the processes; MostOpenFiles is the
	// largest of one process, the number to hold against FileLimit.
	OpenFiles     int64
	MostOpenFiles int64
	// HeapInuseBytes and StackInuseBytes are the Go runtime's
	// go_memstats_heap_inuse_bytes and go_memstats_stack_inuse_bytes
	// (metrics only): live heap spans and goroutine stacks, the parts of
	// RSS that do not depend on when the collector last ran.
	HeapInuseBytes  int64
	StackInuseBytes int64
	// FileLimit is the smallest soft RLIMIT_NOFILE of the processes, -1
	// when unknown.
	FileLimit int64
}

// Known reports whether the target has any source.
func (t Target) Known() bool { return len(t.MetricsURLs) > 0 || len(t.PIDs) > 0 }

// Sample reads the current numbers. RSS and open files come from /proc when
// PIDs are given (exact), else RSS from the metrics; goroutines only from
// the metrics. It fails only when a source fails.
func (t Target) Sample(ctx context.Context) (Sample, error) {
	s := Sample{RSSBytes: -1, Goroutines: -1, OpenFiles: -1, MostOpenFiles: -1, FileLimit: -1, HeapInuseBytes: -1, StackInuseBytes: -1}
	var errs []error
	var metricsRSS int64 = -1
	for _, u := range t.MetricsURLs {
		m, err := t.scrape(ctx, u)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if v, ok := m["process_resident_memory_bytes"]; ok {
			metricsRSS = max(metricsRSS, 0) + int64(v)
		}
		if v, ok := m["go_goroutines"]; ok {
			s.Goroutines = max(s.Goroutines, 0) + int64(v)
		}
		if v, ok := m["go_memstats_heap_inuse_bytes"]; ok {
			s.HeapInuseBytes = max(s.HeapInuseBytes, 0) + int64(v)
		}
		if v, ok := m["go_memstats_stack_inuse_bytes"]; ok {
			s.StackInuseBytes = max(s.StackInuseBytes, 0) + int64(v)
		}
	}
	for _, pid := range t.PIDs {
		rss, err := procRSS(pid)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.RSSBytes = max(s.RSSBytes, 0) + rss
		if n, err := procOpenFiles(pid); err == nil {
			s.OpenFiles = max(s.OpenFiles, 0) + n
			s.MostOpenFiles = max(s.MostOpenFiles, n)
		}
		if l, err := procFileLimit(pid); err == nil && (s.FileLimit < 0 || l < s.FileLimit) {
			s.FileLimit = l
		}
	}
	if s.RSSBytes < 0 {
		s.RSSBytes = metricsRSS
	}
	return s, errors.Join(errs...)
}

func (t Target) scrape(ctx context.Context, url string) (map[string]float64, error) {
	hc := t.Client
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("probe: scrape %s: %w", url, err)
	}
	defer func() { _ = res.Body.Close() }()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("probe: scrape %s: %s", url, res.Status)
	}
	return ParseMetrics(res.Body, "process_resident_memory_bytes", "go_goroutines", "go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes")
}

// ParseMetrics reads the Prometheus text exposition format and returns the
// values of the named unlabelled gauges that it holds. Other lines are
// skipped unparsed.
func ParseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok || !want[name] {
			continue
		}
		// "value" or "value timestamp"
		value, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("probe: metric %s: %w", name, err)
		}
		out[name] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("probe: read metrics: %w", err)
	}
	return out, nil
}

// procRSS reads VmRSS from /proc/<pid>/status.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("probe: %w", err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("probe: pid %d VmRSS: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("probe: pid %d: no VmRSS (exited?)", pid)
}

func procOpenFiles(pid int) (int64, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, err
	}
	return int64(len(ents)), nil
}

// procFileLimit reads the soft "Max open files" of /proc/<pid>/limits.
func procFileLimit(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no open files limit")
}

// LoadAverage returns the machine's 1, 5 and 15 minute load averages
// (zeros when /proc/loadavg cannot be read).
func LoadAverage() [3]float64 {
	var l [3]float64
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(b))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}
