// Command loadtest is Parley's load generator: it signs devices up on a
// Parley server, drives them through a scenario (idle streams, 1:1 traffic
// at an open-loop rate, group fan-out, catch-up after a reconnect, or a
// short mixed smoke run), checks that every message reached every device
// it should, and reports throughput, latency percentiles and server memory
// as Markdown and JSON. See loadtest/README.md.
//
//	go run ./loadtest smoke -spawn embedded
//	go run ./loadtest p2p -spawn embedded -find-max
//	go run ./loadtest conns -server http://127.0.0.1:8080 -conns 15000 -metrics http://127.0.0.1:9090/metrics
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"

	"github.com/parley-im/parley/loadtest/internal/probe"
	"github.com/parley-im/parley/loadtest/internal/report"
	"github.com/parley-im/parley/loadtest/internal/scenario"
	"github.com/parley-im/parley/loadtest/internal/spawn"
	"github.com/parley-im/parley/loadtest/internal/worker"
)

// Exit statuses.
const (
	exitPass  = 0
	exitFail  = 1 // the run finished and the checker (or smoke) failed it
	exitError = 2 // the run could not be carried out
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the whole command; it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if os.Getenv(worker.EnvWorker) != "" {
		return serveWorker(ctx, stderr)
	}
	// Logs, the progress line and the worker processes all write here.
	stderr = &syncWriter{w: stderr}
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitPass
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitError
	}
	level := slog.LevelWarn
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(stderr, "loadtest: -cpuprofile:", err)
			return exitError
		}
		defer func() {
			pprof.StopCPUProfile()
			_ = f.Close()
		}()
	}
	limit, err := raiseFileLimit()
	if err != nil {
		logger.Warn("raising the open files limit", "err", err)
	}
	cfg := o.Config
	cfg.Logger = logger
	cfg.Progress, cfg.TTY = stderr, isTerminal(stderr)
	cfg.WorkerStderr = stderr
	if cfg.Exe, err = os.Executable(); err != nil && cfg.Procs > 1 {
		fmt.Fprintln(stderr, "loadtest: cannot re-run myself for -procs:", err)
		return exitError
	}

	var srv *spawn.Servers
	if o.spawnKind != "" {
		fmt.Fprintf(stderr, "loadtest: starting parleyd (%s)…\n", o.spawnKind)
		srv, err = spawn.Start(ctx, spawn.Config{Kind: o.spawnKind, Shards: o.shards, Binary: o.parleyd, Logger: logger})
		if err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return exitError
		}
		defer func() {
			if err := srv.Stop(); err != nil {
				fmt.Fprintln(stderr, "loadtest: stopping parleyd:", err)
			}
		}()
		cfg.Servers = srv.URLs
		cfg.ServerLabel = "spawned " + o.spawnKind
		cfg.Probe = probe.Target{PIDs: srv.PIDs, MetricsURLs: srv.MetricsURLs}
	} else {
		cfg.ServerLabel = strings.Join(cfg.Servers, ",")
		if o.metrics != "" {
			cfg.Probe.MetricsURLs = strings.Split(o.metrics, ",")
		}
		if o.serverPIDs != "" {
			if cfg.Probe.PIDs, err = splitInts(o.serverPIDs); err != nil {
				fmt.Fprintln(stderr, "loadtest: -server-pid:", err)
				return exitError
			}
		}
	}

	res, err := scenario.Run(ctx, cfg)
	if res != nil {
		res.Notes = append(res.Notes, fmt.Sprintf("generator open files limit: %d per process", limit))
		if srv != nil {
			res.Notes = append(res.Notes, srv.LogTail(5)...)
		}
		if werr := write(res, o, stdout); werr != nil {
			fmt.Fprintln(stderr, "loadtest:", werr)
			return exitError
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "loadtest:", err)
		return exitError
	}
	if !res.Pass {
		fmt.Fprintf(stderr, "loadtest: FAILED: lost %d, duplicates %d, %d violations; %s\n", res.Lost, res.Duplicates, len(res.Violations), res.LimitHit)
		return exitFail
	}
	return exitPass
}

// write prints the Markdown summary and writes the requested files.
func write(res *report.Result, o *options, stdout io.Writer) error {
	if err := res.Markdown(stdout); err != nil {
		return err
	}
	if o.jsonPath != "" {
		if err := res.WriteJSON(o.jsonPath); err != nil {
			return err
		}
	}
	if o.mdPath != "" {
		if err := res.WriteMarkdown(o.mdPath); err != nil {
			return err
		}
	}
	return nil
}

// serveWorker is a worker process (-procs): the coordinator talks to it
// over stdin and stdout.
func serveWorker(ctx context.Context, stderr io.Writer) int {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).
		With("worker", os.Getenv(worker.EnvWorker))
	if _, err := raiseFileLimit(); err != nil {
		logger.Warn("raising the open files limit", "err", err)
	}
	if err := worker.Serve(ctx, worker.New(logger), os.Stdin, os.Stdout); err != nil {
		logger.Error("worker", "err", err)
		return exitError
	}
	return exitPass
}

// raiseFileLimit raises the soft limit on open files to the hard limit and
// returns it. (The Go runtime does this too on Linux; doing it here makes
// it explicit and lets the report name the limit.)
func raiseFileLimit() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return l.Cur, err
		}
	}
	return l.Cur, nil
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func isTerminal(w io.Writer) bool {
	if s, ok := w.(*syncWriter); ok {
		w = s.w
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
