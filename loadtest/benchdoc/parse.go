package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// benchResult is one line of `go test -bench` output.
type benchResult struct {
	pkg     string
	name    string // without the -GOMAXPROCS suffix
	metrics []metric
}

type metric struct {
	value float64
	unit  string
}

// parseBench reads `go test -bench` output: "pkg:" lines name the package
// of the results that follow.
func parseBench(out string) []benchResult {
	var res []benchResult
	pkg := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimPrefix(strings.TrimSpace(p), "github.com/parley-im/parley/")
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 4 {
			continue
		}
		if _, err := strconv.Atoi(fields[1]); err != nil {
			continue // a log line, not a result
		}
		name := fields[0]
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		r := benchResult{pkg: pkg, name: name}
		for i := 2; i+1 < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				break
			}
			r.metrics = append(r.metrics, metric{value: v, unit: fields[i+1]})
		}
		res = append(res, r)
	}
	return res
}

// benchCPU returns the "cpu:" line of `go test -bench` output.
func benchCPU(out string) string {
	for line := range strings.Lines(out) {
		if c, ok := strings.CutPrefix(line, "cpu: "); ok {
			return strings.TrimSpace(c)
		}
	}
	return ""
}

// loadReport is a load generator report: its JSON fields, and the command
// that produced it.
type loadReport struct {
	file    string
	fields  map[string]any
	command string
}

func readLoad(path string) (loadReport, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return loadReport{}, err
	}
	r := loadReport{file: path, fields: map[string]any{}}
	if err := json.Unmarshal(data, &r.fields); err != nil {
		return loadReport{}, fmt.Errorf("%s: %w", path, err)
	}
	if cmd, err := os.ReadFile(strings.TrimSuffix(path, ".json") + ".cmd"); err == nil {
		r.command = strings.TrimSpace(string(cmd))
	}
	return r, nil
}

// machine describes where the numbers were taken.
type machine struct {
	cores  int
	memory string
	os     string
	cpu    string
}

func describeMachine() machine {
	m := machine{cores: runtime.NumCPU(), memory: "?", os: runtime.GOOS}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64); err == nil {
					m.memory = fmt.Sprintf("%.0f GiB", kb/(1<<20))
				}
			}
		}
	}
	if data, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(data)) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				m.os = strings.Trim(v, `"`)
			}
		}
	}
	return m
}
