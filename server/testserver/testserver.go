// Package testserver runs the real parleyd binary for end-to-end tests: built
// once per test binary with -race, started on a free loopback port with its
// own data directory, and ready when grpc.health.v1.Health/Check answers
// SERVING. Like nats-server's RunServer, it is a real process talking over a
// real socket, so tests see exactly what a client would.
//
// A package that uses it should remove the build when its tests end:
//
//	func TestMain(m *testing.M) { os.Exit(testserver.Run(m)) }
//
// Builds left behind by packages that do not are removed by the next build.
//
// It is for tests only, of the server and of the clients (which is why it
// is not under internal/): nothing but _test.go files imports it.
package testserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
)

// BinaryEnv names an environment variable that, when set, is the parleyd
// binary to run instead of building one (for debugging a build of your own).
const BinaryEnv = "PARLEY_TEST_PARLEYD"

const (
	// readyTimeout bounds the wait for SERVING: a -race binary opening its
	// store on a loaded 2-core CI machine can take seconds.
	readyTimeout = 60 * time.Second
	// stopTimeout bounds a graceful stop before Stop gives up and kills.
	stopTimeout = 30 * time.Second
	// startAttempts covers the small window in which another process can
	// take the port picked for the server before the server binds it.
	startAttempts = 3
)

// adminLine is parleyd's stdout line naming its admin endpoints.
var adminLine = regexp.MustCompile(`admin endpoints on http://(\S+)`)

var build struct {
	once sync.Once
	dir  string // directory holding the binary; removed by Run
	path string
	err  error
}

// Build returns the path of a parleyd binary built from ./server/cmd/parleyd
// with -race, building it on the first call in the test binary. Later calls,
// from any goroutine, return the same binary (or the same build failure,
// which fails tb).
func Build(tb testing.TB) string {
	tb.Helper()
	build.once.Do(func() {
		if path := os.Getenv(BinaryEnv); path != "" {
			build.path = path
			return
		}
		build.path, build.err = buildParleyd()
	})
	if build.err != nil {
		tb.Fatalf("testserver: %v", build.err)
	}
	return build.path
}

// Run runs the tests and then removes the binary Build made, returning m.Run's
// exit code. Call it from TestMain.
func Run(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		_ = os.RemoveAll(build.dir)
	}
	return code
}

// Option configures Start.
type Option func(*options)

type options struct {
	dataDir    string
	args       []string
	env        []string
	stableAddr bool
}

// WithDataDir runs the server on dir instead of a fresh temporary directory,
// for tests that restart a server on an existing store. The caller owns dir.
func WithDataDir(dir string) Option {
	return func(o *options) { o.dataDir = dir }
}

// WithStableAddr makes Restart, and a start after Kill, listen on the
// address of the first start instead of a fresh port, as a restarted pod keeps
// its address behind its Service: clients holding the URL reconnect on their
// own. Such a start fails if another process took the port in the meantime.
func WithStableAddr() Option {
	return func(o *options) { o.stableAddr = true }
}

// WithArgs passes extra command-line flags to parleyd, after -listen and
// -data-dir (so they can override neither).
func WithArgs(args ...string) Option {
	return func(o *options) { o.args = append(o.args, args...) }
}

// WithEnv adds KEY=VALUE pairs to parleyd's environment. The environment is
// otherwise the test's own, minus every PARLEY_* variable, so that a
// developer's settings never leak into a test.
func WithEnv(kv ...string) Option {
	return func(o *options) { o.env = append(o.env, kv...) }
}

// Server is a running parleyd process. Its methods are meant to be called
// from the test's goroutine: they are not safe for concurrent use, except
// URL, Addr, DataDir and Output. tb.Cleanup kills the process if the test
// has not stopped it.
type Server struct {
	bin  string
	opts options
	out  *syncBuffer // stdout and stderr of every run, in order

	mu        sync.Mutex
	addr      string
	adminAddr string   // the admin endpoints' host:port, from the output
	pinned    string   // with WithStableAddr: the address every start uses once set
	proc      *process // nil when not running
}

// Start runs parleyd on a free loopback port and returns once it reports
// SERVING. It fails tb if the server does not start; the server's output is
// then in the test log.
func Start(tb testing.TB, opts ...Option) *Server {
	tb.Helper()
	s := &Server{bin: Build(tb), out: new(syncBuffer)}
	for _, opt := range opts {
		opt(&s.opts)
	}
	if s.opts.dataDir == "" {
		s.opts.dataDir = tb.TempDir()
	}
	tb.Cleanup(func() {
		s.Kill()
		if tb.Failed() {
			tb.Logf("parleyd output:\n%s", s.Output())
		}
	})
	s.start(tb)
	return s
}

// URL returns the server's base URL, http://127.0.0.1:PORT. It changes on
// Restart, unless the server was started WithStableAddr.
func (s *Server) URL() string { return "http://" + s.Addr() }

// Addr returns the server's host:port, as grpcurl and buf curl take it.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// AdminURL returns the base URL of the server's admin endpoints (metrics,
// pprof, healthz, readyz), http://127.0.0.1:PORT, on a port of its own
// picked at every start; empty if WithArgs disabled them.
func (s *Server) AdminURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.adminAddr == "" {
		return ""
	}
	return "http://" + s.adminAddr
}

// DataDir returns the server's data directory, which outlives Stop and Kill.
func (s *Server) DataDir() string { return s.opts.dataDir }

// Output returns everything the server has written to stdout and stderr so
// far, across restarts.
func (s *Server) Output() string { return s.out.String() }

// Kill sends SIGKILL and waits for the process to exit, like a crash. It does
// nothing if the server is not running.
func (s *Server) Kill() {
	p := s.takeProcess()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Stop sends SIGTERM and waits for a graceful shutdown. It returns an error if
// the server exits other than cleanly (status 0) or takes longer than 30s (it
// is then killed). It returns nil if the server is not running.
func (s *Server) Stop() error {
	p := s.takeProcess()
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		return fmt.Errorf("testserver: parleyd had already exited: %w", p.err)
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		<-p.exited
		return fmt.Errorf("testserver: SIGTERM: %w (exit: %w)", err, p.err)
	}
	select {
	case <-p.exited:
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.exited
		return fmt.Errorf("testserver: parleyd did not stop within %v of SIGTERM; killed", stopTimeout)
	}
	if p.err != nil {
		return fmt.Errorf("testserver: parleyd did not exit cleanly: %w", p.err)
	}
	return nil
}

// Restart stops the server gracefully (failing tb if that fails) and starts
// it again on the same data directory and flags; the port may change (see
// WithStableAddr). It also starts a server that was stopped or killed.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	if err := s.Stop(); err != nil {
		tb.Fatalf("%v\nparleyd output:\n%s", err, s.Output())
	}
	s.start(tb)
}

// Client returns a connect client for the server over HTTPClient, for the
// generated service clients. opts are connecthttp options, e.g.
// connecthttp.WithGRPC(). It is bound to the current URL: get a new one after
// Restart.
func (s *Server) Client(tb testing.TB, opts ...connecthttp.Option) *connect.Client {
	tb.Helper()
	return connect.NewClient(connecthttp.NewTransport(HTTPClient(tb), s.URL(), opts...))
}

// HTTPClient returns an h2c HTTP client (HTTP/2 without TLS, prior
// knowledge), as gRPC over cleartext needs; the Connect and gRPC-Web
// protocols work over it too. Its idle connections are closed when the test
// ends.
func HTTPClient(tb testing.TB) *http.Client {
	tb.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: protocols}
	tb.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport}
}

// start runs the process until it is ready, retrying on a fresh port if the
// picked one was taken in the meantime.
func (s *Server) start(tb testing.TB) {
	tb.Helper()
	var err error
	for range startAttempts {
		var retry bool
		retry, err = s.startOnce(tb.Context())
		if err == nil || !retry {
			break
		}
	}
	if err != nil {
		tb.Fatalf("testserver: %v\nparleyd output:\n%s", err, s.Output())
	}
}

func (s *Server) startOnce(ctx context.Context) (retry bool, err error) {
	s.mu.Lock()
	pinned := s.pinned
	s.mu.Unlock()
	addr := pinned
	if addr == "" {
		if addr, err = freeAddr(); err != nil {
			return false, err
		}
	}
	// The admin endpoints take any free port, so that processes of one
	// test never share the default one; WithArgs may override it.
	args := append([]string{"-listen", addr, "-admin-listen", "127.0.0.1:0", "-data-dir", s.opts.dataDir}, s.opts.args...)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(environ(), s.opts.env...)
	mark := s.out.Len()
	fmt.Fprintf(s.out, "--- testserver: %s %s\n", filepath.Base(s.bin), strings.Join(args, " "))
	cmd.Stdout = s.out
	cmd.Stderr = s.out
	// Bounds Wait's copying of the output if the pipes outlive the process.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("start parleyd: %w", err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	// The process's goroutine is owned by Server: it ends when the process
	// does, which Kill, Stop and the test's cleanup all wait for.
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	s.mu.Lock()
	s.addr, s.proc = addr, p
	s.mu.Unlock()

	if err := waitReady(ctx, "http://"+addr, p.exited); err != nil {
		s.Kill()
		inUse := strings.Contains(s.out.String()[mark:], "address already in use")
		// A pinned address is the point of the start: another port won't do.
		return inUse && pinned == "", err
	}
	// Ready means the output already names the admin address.
	var adminAddr string
	if m := adminLine.FindStringSubmatch(s.out.String()[mark:]); m != nil {
		adminAddr = m[1]
	}
	s.mu.Lock()
	s.adminAddr = adminAddr
	s.mu.Unlock()
	if s.opts.stableAddr {
		s.mu.Lock()
		s.pinned = addr
		s.mu.Unlock()
	}
	return false, nil
}

// takeProcess detaches the running process, if any, from s.
func (s *Server) takeProcess() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.proc
	s.proc = nil
	return p
}

type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once err is set
	err    error         // from cmd.Wait
}

// waitReady polls Health/Check until it answers SERVING, the process exits,
// or readyTimeout passes.
func waitReady(ctx context.Context, url string, exited <-chan struct{}) error {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	transport := &http.Transport{Protocols: protocols}
	defer transport.CloseIdleConnections()
	client := healthv1connect.NewHealthClient(connect.NewClient(
		connecthttp.NewTransport(&http.Client{Transport: transport}, url, connecthttp.WithGRPC()),
	))

	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	ticker := time.NewTicker(10 * time.Millisecond)
	defer ticker.Stop()
	var last error
	for {
		attemptCtx, cancelAttempt := context.WithTimeout(ctx, time.Second)
		res, err := client.Check(attemptCtx, &healthv1.HealthCheckRequest{})
		cancelAttempt()
		switch {
		case err != nil:
			last = err
		case res.GetStatus() != healthv1.HealthCheckResponse_SERVING:
			last = fmt.Errorf("health: %v", res.GetStatus())
		default:
			return nil
		}
		select {
		case <-exited:
			return errors.New("parleyd exited before it was ready")
		case <-ctx.Done():
			return fmt.Errorf("parleyd not SERVING after %v: %w", readyTimeout, last)
		case <-ticker.C:
		}
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("pick a port: %w", err)
	}
	addr := ln.Addr().String()
	if err := ln.Close(); err != nil {
		return "", fmt.Errorf("pick a port: %w", err)
	}
	return addr, nil
}

// environ is the test's environment without PARLEY_* variables.
func environ() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			env = append(env, kv)
		}
	}
	return env
}

// buildParleyd builds parleyd into a directory named for this process under
// the system temp dir, first removing those of processes that have exited
// (test binaries whose TestMain does not call Run leave theirs behind).
func buildParleyd() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the parley module")
	}
	root := filepath.Join(os.TempDir(), "parley-testserver")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	sweep(root)
	dir := filepath.Join(root, strconv.Itoa(os.Getpid()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	build.dir = dir
	path := filepath.Join(dir, "parleyd")
	cmd := exec.Command("go", "build", "-race", "-o", path, "./server/cmd/parleyd")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -race ./server/cmd/parleyd: %w\n%s", err, out)
	}
	return path, nil
}

// sweep removes the build directories under root whose process is gone.
func sweep(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		// Signal 0 checks that the process exists; EPERM means it does.
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			_ = os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the process's two output pipes and
// the test reading it at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (b *syncBuffer) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Len()
}
