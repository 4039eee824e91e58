package report

import (
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
)

// Markdown writes the result as a short Markdown summary: a table of the
// numbers that matter for the scenario, the rate steps of a -find-max run,
// the server samples of a conns run, and any violations.
func (r *Result) Markdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "## loadtest %s (%s, %s)\n\n", r.Scenario, r.Transport, r.Server)
	fmt.Fprintf(&b, "%s, %.1f s measured, %d generator process(es), load average %.2f → %.2f\n\n",
		r.StartedAt.Format("2006-01-02 15:04 MST"), r.DurationSec, r.Procs, r.LoadStart[0], r.LoadEnd[0])
	b.WriteString("| metric | value |\n|---|---|\n")
	row := func(k, format string, args ...any) { fmt.Fprintf(&b, "| %s | %s |\n", k, fmt.Sprintf(format, args...)) }
	if r.Conns > 0 || r.Scenario == "conns" {
		row("streams held", "%s", group(r.Conns))
		row("connect rate", "%s streams/s", group(int64(r.ConnectRate)))
		row("server memory per stream (RSS)", "%s", bytes(r.BytesPerConn))
		if r.HeapPerConn != 0 || r.StackPerConn != 0 {
			row("of which live heap / goroutine stacks", "%s / %s", bytes(r.HeapPerConn), bytes(r.StackPerConn))
		}
		if r.GoroutinesPerConn != 0 {
			row("server goroutines per stream", "%.2f", r.GoroutinesPerConn)
		}
	}
	if r.Rate > 0 {
		row("target rate", "%s msgs/s", group(int64(r.Rate)))
	}
	if r.MaxRate > 0 {
		row("highest sustained rate", "%s msgs/s", group(int64(r.MaxRate)))
	}
	if r.Headline != "" {
		row("achieved", "%s msgs/s (%s)", group(int64(r.MsgsPerSec)), r.Headline)
		row("latency p50 / p90 / p99 / p99.9 / max", "%.2f / %.2f / %.2f / %.2f / %.2f ms (%s samples)",
			r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms, r.MaxMs, group(r.Samples))
	}
	for _, name := range slices.Sorted(maps.Keys(r.Latencies)) {
		l := r.Latencies[name]
		row(name+" latency p50 / p99 / p99.9 / max", "%.2f / %.2f / %.2f / %.2f ms (%s samples)", l.P50Ms, l.P99Ms, l.P999Ms, l.MaxMs, group(l.Count))
	}
	row("sent / acknowledged / failed", "%s / %s / %s", group(r.Sent), group(r.Acknowledged), group(r.Failed))
	if len(r.Errors) > 0 {
		var errs []string
		for _, k := range slices.Sorted(maps.Keys(r.Errors)) {
			errs = append(errs, fmt.Sprintf("%s %d", k, r.Errors[k]))
		}
		row("failed sends by code", "%s", strings.Join(errs, ", "))
	}
	row("delivered / expected", "%s / %s (+%s paged after gaps, %s repeats dropped by clients)",
		group(r.Delivered), group(r.Expected), group(r.GapFilled), group(r.Redelivered))
	row("**lost**", "**%d**", r.Lost)
	row("duplicates / out of order / unexpected", "%d / %d / %d", r.Duplicates, r.OutOfOrder, r.Unexpected)
	if r.ServerRSSBytes > 0 {
		row("server RSS", "%s", bytes(float64(r.ServerRSSBytes)))
	} else {
		row("server RSS", "unknown (use -spawn, -metrics or -server-pid)")
	}
	if r.ServerGoroutines > 0 {
		row("server goroutines", "%s", group(r.ServerGoroutines))
	}
	if r.LimitHit != "" {
		row("limit hit", "%s", r.LimitHit)
	}
	if len(r.ServerSamples) > 0 {
		b.WriteString("\n| server sample | streams | RSS | heap in use | stacks | goroutines | open files |\n|---|---|---|---|---|---|---|\n")
		for _, s := range r.ServerSamples {
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", s.At, group(s.Streams), bytes(float64(s.RSSBytes)),
				orUnknownBytes(s.HeapInuseBytes), orUnknownBytes(s.StackInuseBytes), orUnknown(s.Goroutines), orUnknown(s.OpenFiles))
		}
	}
	if len(r.Steps) > 0 {
		b.WriteString("\n| target msgs/s | achieved | p50 ms | p90 ms | p99 ms | p99.9 ms | failed | verdict |\n|---|---|---|---|---|---|---|---|\n")
		for _, s := range r.Steps {
			label := group(int64(s.Rate))
			if s.HalfMax {
				label += " (half max)"
			}
			fmt.Fprintf(&b, "| %s | %s | %.2f | %.2f | %.2f | %.2f | %d | %s |\n",
				label, group(int64(s.MsgsPerSec)), s.P50Ms, s.P90Ms, s.P99Ms, s.P999Ms, s.Failed, s.Verdict)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "\n- %s", n)
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n")
	}
	if len(r.Violations) > 0 {
		b.WriteString("\nViolations:\n\n")
		for _, v := range r.Violations {
			fmt.Fprintf(&b, "- %s\n", v)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteMarkdown writes the Markdown summary to path.
func (r *Result) WriteMarkdown(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	if err := r.Markdown(f); err != nil {
		_ = f.Close()
		return fmt.Errorf("report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func orUnknown(v int64) string {
	if v <= 0 {
		return "?"
	}
	return group(v)
}

func orUnknownBytes(v int64) string {
	if v <= 0 {
		return "?"
	}
	return bytes(float64(v))
}

// group formats n with thousands separators: 12,345.
func group(n int64) string {
	s := fmt.Sprint(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}

// bytes formats a byte count in binary units.
func bytes(v float64) string {
	switch {
	case v >= 1<<30 || v <= -(1<<30):
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20 || v <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10 || v <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}
