package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// section is what one `make bench` run measured.
type section struct {
	commit, date string
	machine      machine
	micro        []benchResult
	microCmd     string
	loads        []loadReport
}

func (s section) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Latest `make bench`\n\n")
	fmt.Fprintf(&b, "Run on %s, commit `%s`, machine: %d cores, %s, %s", orDash(s.date), orDash(s.commit), s.machine.cores, s.machine.memory, s.machine.os)
	if s.machine.cpu != "" {
		fmt.Fprintf(&b, ", %s", s.machine.cpu)
	}
	b.WriteString(". Everything (servers, databases, load generator) shares the machine.\n\n")
	if len(s.micro) > 0 {
		b.WriteString("### Hot paths (Go benchmarks)\n\n")
		if s.microCmd != "" {
			fmt.Fprintf(&b, "Command: `%s`\n\n", s.microCmd)
		}
		b.WriteString("| Package | Benchmark | Result |\n| --- | --- | --- |\n")
		for _, r := range s.micro {
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", r.pkg, strings.TrimPrefix(r.name, "Benchmark"), formatMetrics(r.metrics))
		}
		b.WriteString("\n")
	}
	if len(s.loads) > 0 {
		b.WriteString("### Load generator\n\n")
		b.WriteString("| Scenario | Command | msgs/s | p50 ms | p99 ms | p99.9 ms | sent | delivered | lost | duplicates | server RSS | notes |\n")
		b.WriteString("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
		for _, l := range s.loads {
			f := l.fields
			fmt.Fprintf(&b, "| %s | `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				str(f["scenario"]), orDash(l.command), num(f["msgs_per_sec"], 0), num(f["p50_ms"], 1), num(f["p99_ms"], 1), num(f["p999_ms"], 1),
				num(f["sent"], 0), num(f["delivered"], 0), num(f["lost"], 0), num(f["duplicates"], 0), bytes(f["server_rss_bytes"]), notes(f))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// notes lists the report's fields the table has no column for.
func notes(f map[string]any) string {
	shown := map[string]bool{"scenario": true, "msgs_per_sec": true, "p50_ms": true, "p99_ms": true, "p999_ms": true,
		"sent": true, "delivered": true, "lost": true, "duplicates": true, "server_rss_bytes": true,
		// Bookkeeping rather than results.
		"started_at": true, "samples": true, "procs": true, "expected": true,
		"headline": true, "pass": true, "max_ms": true, "acknowledged": true, "server_goroutines": true}
	var keys []string
	for k, v := range f {
		if shown[k] {
			continue
		}
		switch v.(type) {
		case float64, string, bool:
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := f[k]
		s := str(v)
		if x, ok := v.(float64); ok {
			s = strconv.FormatFloat(x, 'f', -1, 64)
			if x >= 1000 || x != float64(int64(x)) {
				s = num(x, 2)
			}
		}
		if s == "" || s == "0" || s == "false" {
			continue // counters that stayed at zero say nothing
		}
		parts = append(parts, k+"="+strings.ReplaceAll(s, "|", "/"))
	}
	return strings.Join(parts, ", ")
}

func formatMetrics(ms []metric) string {
	parts := make([]string, 0, len(ms))
	for _, m := range ms {
		parts = append(parts, num(m.value, 1)+" "+m.unit)
	}
	return strings.Join(parts, ", ")
}

func str(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	default:
		return fmt.Sprint(x)
	}
}

// num formats a JSON number with thousands separators and up to prec
// decimals; anything else as "–".
func num(v any, prec int) string {
	x, ok := v.(float64)
	if !ok {
		return "–"
	}
	s := strconv.FormatFloat(x, 'f', prec, 64)
	if x == float64(int64(x)) {
		s = strconv.FormatInt(int64(x), 10)
	}
	intPart, frac, _ := strings.Cut(s, ".")
	neg := strings.HasPrefix(intPart, "-")
	intPart = strings.TrimPrefix(intPart, "-")
	var g []string
	for len(intPart) > 3 {
		g = append([]string{intPart[len(intPart)-3:]}, g...)
		intPart = intPart[:len(intPart)-3]
	}
	g = append([]string{intPart}, g...)
	out := strings.Join(g, ",")
	if neg {
		out = "-" + out
	}
	if frac != "" {
		out += "." + frac
	}
	return out
}

func bytes(v any) string {
	x, ok := v.(float64)
	if !ok || x <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f MiB", x/(1<<20))
}

func orDash(s string) string {
	if s == "" {
		return "–"
	}
	return s
}
