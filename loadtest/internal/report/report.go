// Package report holds a load-test run's result and writes it as JSON (for
// machines: benchmarks, CI) and as a Markdown summary (for people).
package report

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/parley-im/parley/loadtest/internal/check"
	"github.com/parley-im/parley/loadtest/internal/stats"
)

// Result is one run. The JSON field names are a contract (docs and `make
// bench` read them); add fields, never rename them. Latency fields are
// milliseconds of the scenario's headline latency (see Headline).
type Result struct {
	Scenario  string    `json:"scenario"`
	Transport string    `json:"transport"`
	Server    string    `json:"server"` // "spawn embedded", or the -server URLs
	Procs     int       `json:"procs"`
	StartedAt time.Time `json:"started_at"`
	// DurationSec is the wall time of the measured part.
	DurationSec float64 `json:"duration_sec"`

	Sent         int64            `json:"sent"`
	Acknowledged int64            `json:"acknowledged"`
	Failed       int64            `json:"failed"`
	Errors       map[string]int64 `json:"errors,omitempty"` // failed sends by Connect code
	Delivered    int64            `json:"delivered"`
	Expected     int64            `json:"expected"`
	Lost         int64            `json:"lost"`
	Duplicates   int64            `json:"duplicates"`
	OutOfOrder   int64            `json:"out_of_order"`
	Unexpected   int64            `json:"unexpected"`
	Redelivered  int64            `json:"redelivered"`
	GapFilled    int64            `json:"gap_filled"`
	// Disconnects counts session streams that broke during the run (each
	// session reconnected and caught up).
	Disconnects int64 `json:"disconnects"`

	// Rate is the target rate (msgs/s) of an open-loop run; MsgsPerSec what
	// was achieved (see Headline for what is counted).
	Rate       float64 `json:"rate,omitempty"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	// Headline says what MsgsPerSec and the p*_ms fields measure.
	Headline string  `json:"headline"`
	P50Ms    float64 `json:"p50_ms"`
	P90Ms    float64 `json:"p90_ms"`
	P99Ms    float64 `json:"p99_ms"`
	P999Ms   float64 `json:"p999_ms"`
	MaxMs    float64 `json:"max_ms"`
	Samples  int64   `json:"samples"`
	// Latencies holds every latency the scenario measured, by name
	// ("deliver", "ack", "fanout", "catchup").
	Latencies map[string]Latency `json:"latencies,omitempty"`

	ServerRSSBytes   int64 `json:"server_rss_bytes"`
	ServerGoroutines int64 `json:"server_goroutines,omitempty"`
	// Conns scenario.
	Conns             int64   `json:"conns,omitempty"`
	ConnectRate       float64 `json:"connect_rate,omitempty"` // streams/s
	BytesPerConn      float64 `json:"bytes_per_conn,omitempty"`
	GoroutinesPerConn float64 `json:"goroutines_per_conn,omitempty"`
	// HeapPerConn and StackPerConn split BytesPerConn's live part: Go heap
	// in use and goroutine stacks per stream (from the runtime metrics).
	HeapPerConn   float64  `json:"heap_per_conn,omitempty"`
	StackPerConn  float64  `json:"stack_per_conn,omitempty"`
	ServerSamples []Sample `json:"server_samples,omitempty"`

	// Steps are the rate steps of p2p -find-max, in order.
	Steps []Step `json:"steps,omitempty"`
	// MaxRate is the highest rate a -find-max run sustained.
	MaxRate float64 `json:"max_rate,omitempty"`

	// Pass is the verdict: the delivery checker found nothing lost,
	// duplicated, reordered or unexplained (smoke also requires every send
	// to be acknowledged).
	Pass bool `json:"pass"`
	// LimitHit names what stopped the run early, or bounded it ("" when
	// nothing did).
	LimitHit   string   `json:"limit_hit,omitempty"`
	Violations []string `json:"violations,omitempty"`
	Notes      []string `json:"notes,omitempty"`
	// Load is the machine's load average (1, 5, 15 min) at the start and
	// the end: the machine is shared.
	LoadStart [3]float64 `json:"load_start"`
	LoadEnd   [3]float64 `json:"load_end"`
}

// Latency is one histogram's percentiles in milliseconds.
type Latency struct {
	Count  int64   `json:"count"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Sample is the server's memory and goroutines at a point of the run.
type Sample struct {
	At         string `json:"at"` // "before", "connected", "after hold", ...
	Streams    int64  `json:"streams"`
	RSSBytes   int64  `json:"rss_bytes"`
	Goroutines int64  `json:"goroutines,omitempty"`
	OpenFiles  int64  `json:"open_files,omitempty"`
	// HeapInuseBytes and StackInuseBytes come from the server's Go
	// runtime metrics, when it has them.
	HeapInuseBytes  int64 `json:"heap_inuse_bytes,omitempty"`
	StackInuseBytes int64 `json:"stack_inuse_bytes,omitempty"`
}

// Step is one rate step of a -find-max run.
type Step struct {
	Rate       float64 `json:"rate"`
	MsgsPerSec float64 `json:"msgs_per_sec"`
	Sent       int64   `json:"sent"`
	Delivered  int64   `json:"delivered"`
	Failed     int64   `json:"failed"`
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	P999Ms     float64 `json:"p999_ms"`
	OK         bool    `json:"ok"`
	Verdict    string  `json:"verdict"` // why the step passed or failed
	HalfMax    bool    `json:"half_max,omitempty"`
}

// LatencyOf converts a histogram summary.
func LatencyOf(s stats.Summary) Latency {
	return Latency{Count: s.Count, P50Ms: Ms(s.P50), P90Ms: Ms(s.P90), P99Ms: Ms(s.P99), P999Ms: Ms(s.P999), MaxMs: Ms(s.Max)}
}

// SetHeadline sets the p*_ms fields from a summary, and Headline.
func (r *Result) SetHeadline(what string, s stats.Summary) {
	r.Headline = what
	r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs = Ms(s.P50), Ms(s.P90), Ms(s.P99), Ms(s.P999), Ms(s.Max)
	r.Samples = s.Count
}

// SetLatency records a named latency.
func (r *Result) SetLatency(name string, s stats.Summary) {
	if r.Latencies == nil {
		r.Latencies = map[string]Latency{}
	}
	r.Latencies[name] = LatencyOf(s)
}

// SetCheck copies the delivery checker's verdict.
func (r *Result) SetCheck(c check.Report) {
	n := c.Counts
	r.Sent, r.Acknowledged, r.Failed = n.Sent, n.Acked, n.Failed
	r.Errors = n.FailedBy
	r.Delivered, r.Expected, r.Lost, r.Duplicates = n.Delivered, n.Expected, n.Lost, n.Duplicates
	r.OutOfOrder, r.Unexpected, r.Redelivered, r.GapFilled = n.OutOfOrder, n.Unexpected, n.Redelivered, n.GapFilled
	r.Violations = c.Violations
	if c.ViolationCount > len(c.Violations) {
		r.Violations = append(r.Violations, fmt.Sprintf("… and %d more violations", c.ViolationCount-len(c.Violations)))
	}
}

// WriteJSON writes the result to path (indented, with a final newline).
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil { //nolint:gosec // a report, not a secret
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

// Ms converts a duration to fractional milliseconds, rounded to µs.
func Ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}
