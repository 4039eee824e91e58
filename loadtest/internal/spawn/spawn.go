// Package spawn builds parleyd and runs it for a load test: one embedded
// process, one process on a throwaway PostgreSQL, or a cluster of shards
// (one process each) on PostgreSQL and Redis. The services come from
// storage/storagetest/realsvc, the same helper the server's own tests use.
// Everything started is stopped by Servers.Stop.
package spawn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// Kinds of deployment Start knows.
const (
	Embedded = "embedded"
	Postgres = "postgres"
	Cluster  = "cluster"
)

const (
	parleydPackage = "github.com/parley-im/parley/server/cmd/parleyd"
	startTimeout   = 90 * time.Second
	stopTimeout    = 30 * time.Second
)

var servingLine = regexp.MustCompile(`serving on (http://\S+)`)

// BenchEnv is the environment that keeps parleyd's abuse limits out of a
// load test's way: no per-device send rate, no per-address limit on
// sign-ups, and cheap password hashing (registration speed is not what a
// load test measures). The same as the server's own benchmarks use.
func BenchEnv() map[string]string {
	return map[string]string{
		"PARLEY_CHAT_SEND_RATE":             "0",
		"PARLEY_AUTH_ADDRESS_ATTEMPT_BURST": "0",
		"PARLEY_AUTH_ARGON2_MEMORY_KIB":     "1024",
	}
}

// Config says what to start.
type Config struct {
	// Kind is Embedded, Postgres or Cluster.
	Kind string
	// Shards is the number of shards of a Cluster (one process each);
	// 0 means 2.
	Shards int
	// Binary is a parleyd to run; empty builds one from this module into a
	// temporary directory (go build, so the go command must be on PATH and
	// the working directory inside the module).
	Binary string
	// BuildFlags are extra `go build` flags, e.g. -race.
	BuildFlags []string
	// Env is added to the processes' environment (after BenchEnv).
	Env map[string]string
	// Args are extra parleyd flags for every process.
	Args []string
	// Logger reports progress; nil discards.
	Logger *slog.Logger
}

// Servers is a running deployment.
type Servers struct {
	// URLs are the client base URLs, in shard order.
	URLs []string
	// PIDs are the parleyd processes, in shard order.
	PIDs []int
	// MetricsURLs are the processes' Prometheus endpoints; empty when this
	// parleyd has no admin listener.
	MetricsURLs []string
	// Dir holds the binary, data directories and logs (parleyd-N.log).
	Dir string

	procs  []*exec.Cmd
	waits  []chan error
	pg     *realsvc.Postgres
	rd     *realsvc.Redis
	logger *slog.Logger
}

// Start builds parleyd (unless cfg.Binary is set), starts the services the
// kind needs and the parleyd processes, and returns once every process
// serves. On error, whatever was started is stopped.
func Start(ctx context.Context, cfg Config) (_ *Servers, err error) {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "loadtest-parleyd")
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	s := &Servers{Dir: dir, logger: logger}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()
	bin := cfg.Binary
	if bin == "" {
		bin = filepath.Join(dir, "parleyd")
		start := time.Now()
		args := append(append([]string{"build"}, cfg.BuildFlags...), "-o", bin, parleydPackage)
		cmd := exec.CommandContext(ctx, "go", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("spawn: go %s: %w\n%s(run from inside the Parley module, or give a built parleyd)", strings.Join(args, " "), err, out)
		}
		logger.Info("built parleyd", "took", time.Since(start).Round(time.Millisecond))
	}
	admin := hasAdminListener(ctx, bin)

	env := BenchEnv()
	for k, v := range cfg.Env {
		env[k] = v
	}
	switch cfg.Kind {
	case Embedded:
		err = s.startProcess(ctx, bin, env, admin, append([]string{"-listen", "127.0.0.1:0"}, cfg.Args...))
	case Postgres:
		if s.pg, err = realsvc.StartPostgres(); err != nil {
			return nil, fmt.Errorf("spawn: %w", err)
		}
		err = s.startProcess(ctx, bin, env, admin, append([]string{"-listen", "127.0.0.1:0", "-store", s.pg.DSN()}, cfg.Args...))
	case Cluster:
		err = s.startCluster(ctx, cfg, bin, env, admin)
	default:
		return nil, fmt.Errorf("spawn: unknown kind %q (want %s, %s or %s)", cfg.Kind, Embedded, Postgres, Cluster)
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Servers) startCluster(ctx context.Context, cfg Config, bin string, env map[string]string, admin bool) error {
	shards := cfg.Shards
	if shards == 0 {
		shards = 2
	}
	var err error
	if s.pg, err = realsvc.StartPostgres(); err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	if s.rd, err = realsvc.StartRedis(realsvc.RedisOptions{}); err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	// Every process must know every shard's address for Locate, before
	// any of them listens: pick the ports first.
	urls := make([]string, shards)
	for i := range urls {
		port, err := freePort()
		if err != nil {
			return err
		}
		urls[i] = "http://127.0.0.1:" + strconv.Itoa(port)
	}
	env["PARLEY_AUTH_SIGNING_KEY_FILE"] = filepath.Join(s.Dir, "signing.key")
	for i := range shards {
		args := []string{
			"-listen", strings.TrimPrefix(urls[i], "http://"),
			"-store", s.pg.DSN(), "-redis", s.rd.URL(),
			"-shard", strconv.Itoa(i), "-shards", strconv.Itoa(shards),
			"-node", "loadtest-node" + strconv.Itoa(i),
			"-shard-addresses", strings.Join(urls, ","),
		}
		// One at a time: the first process writes the signing key the
		// others read.
		if err := s.startProcess(ctx, bin, env, admin, append(args, cfg.Args...)); err != nil {
			return err
		}
	}
	return nil
}

// startProcess starts one parleyd and waits for its "serving on" line.
func (s *Servers) startProcess(ctx context.Context, bin string, env map[string]string, admin bool, args []string) error {
	n := len(s.procs)
	args = append([]string{"-data-dir", filepath.Join(s.Dir, "data"+strconv.Itoa(n)), "-log-level", "warn"}, args...)
	var metrics string
	if admin {
		port, err := freePort()
		if err != nil {
			return err
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		args = append(args, "-admin-listen", addr)
		metrics = "http://" + addr + "/metrics"
	}
	logPath := filepath.Join(s.Dir, "parleyd-"+strconv.Itoa(n)+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	cmd := exec.Command(bin, args...) //nolint:gosec // our own build of parleyd
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = logFile.Close()
		return fmt.Errorf("spawn: %w", err)
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("spawn: start parleyd: %w", err)
	}
	wait := make(chan error, 1)
	s.procs = append(s.procs, cmd)
	s.waits = append(s.waits, wait)

	found := make(chan string, 1)
	go func() {
		// Read stdout to the end (parleyd prints a few lines), so the
		// process never blocks on a full pipe; then reap it.
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil && !sent {
				found <- m[1]
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		wait <- cmd.Wait()
		_ = logFile.Close()
	}()
	timer := time.NewTimer(startTimeout)
	defer timer.Stop()
	select {
	case url := <-found:
		s.URLs = append(s.URLs, url)
		s.PIDs = append(s.PIDs, cmd.Process.Pid)
		if metrics != "" {
			s.MetricsURLs = append(s.MetricsURLs, metrics)
		}
		s.logger.Info("parleyd serving", "url", url, "pid", cmd.Process.Pid, "log", logPath)
		return nil
	case err := <-wait:
		wait <- err // for Stop
		return fmt.Errorf("spawn: parleyd exited before serving: %w\n%s", err, tail(logPath))
	case <-timer.C:
		return fmt.Errorf("spawn: parleyd did not serve within %s\n%s", startTimeout, tail(logPath))
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stop stops every parleyd (SIGTERM, then SIGKILL after 30 s), then the
// services, and deletes the directory. It is idempotent.
func (s *Servers) Stop() error {
	var errs []error
	for i, cmd := range s.procs {
		if cmd == nil {
			continue
		}
		s.procs[i] = nil
		_ = cmd.Process.Signal(syscall.SIGTERM)
		timer := time.NewTimer(stopTimeout)
		select {
		case err := <-s.waits[i]:
			var exit *exec.ExitError
			if err != nil && !errors.As(err, &exit) {
				errs = append(errs, fmt.Errorf("spawn: parleyd %d: %w", i, err))
			} else if err != nil && exit.ExitCode() != 0 {
				errs = append(errs, fmt.Errorf("spawn: parleyd %d exited with %w\n%s", i, err, tail(filepath.Join(s.Dir, "parleyd-"+strconv.Itoa(i)+".log"))))
			}
		case <-timer.C:
			_ = cmd.Process.Kill()
			if err := <-s.waits[i]; err != nil {
				s.logger.Debug("parleyd killed", "n", i, "err", err)
			}
			errs = append(errs, fmt.Errorf("spawn: parleyd %d did not stop within %s; killed", i, stopTimeout))
		}
		timer.Stop()
	}
	if s.rd != nil {
		errs = append(errs, s.rd.Stop())
		s.rd = nil
	}
	if s.pg != nil {
		errs = append(errs, s.pg.Stop())
		s.pg = nil
	}
	if s.Dir != "" {
		errs = append(errs, os.RemoveAll(s.Dir))
		s.Dir = ""
	}
	return errors.Join(errs...)
}

// LogTail returns the last lines of each process's log (parleyd runs
// at -log-level warn, so these are its warnings and errors), prefixed with
// the process number; nil when the logs are empty.
func (s *Servers) LogTail(lines int) []string {
	var out []string
	for i := range s.procs {
		b, err := os.ReadFile(filepath.Join(s.Dir, "parleyd-"+strconv.Itoa(i)+".log"))
		if err != nil {
			continue
		}
		all := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(all) == 1 && all[0] == "" {
			continue
		}
		if len(all) > lines {
			out = append(out, fmt.Sprintf("parleyd %d: … %d earlier log lines", i, len(all)-lines))
			all = all[len(all)-lines:]
		}
		for _, l := range all {
			if len(l) > 300 {
				l = l[:300] + "…"
			}
			out = append(out, fmt.Sprintf("parleyd %d: %s", i, l))
		}
	}
	return out
}

// hasAdminListener reports whether this parleyd takes -admin-listen (the
// metrics endpoint), from its usage text.
func hasAdminListener(ctx context.Context, bin string) bool {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-h")
	cmd.Stdout, cmd.Stderr = &out, &out
	_ = cmd.Run() // -h exits non-zero
	return strings.Contains(out.String(), "-admin-listen")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("spawn: free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tail returns the end of a log file for an error message.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	const n = 4000
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
