// Package e2e_test runs parleyd as a real process on loopback and drives it
// with the Go SDK over HTTP/2, the way an outside client would.
package e2e_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// waitTimeout bounds every wait on an event; nothing sleeps.
const waitTimeout = 30 * time.Second

// parleydBin is the server binary, built once per test binary by TestMain.
var parleydBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "parley-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	parleydBin = filepath.Join(dir, "parleyd")
	build := exec.Command(goTool(), "build", "-o", parleydBin, "github.com/parley-im/parley/server/cmd/parleyd")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building parleyd:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func goTool() string {
	if p := filepath.Join(runtime.GOROOT(), "bin", "go"); fileExists(p) {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// parleyd is one server process with its own data directory. Restarts reuse
// the data directory and the port, so clients keep their base URL.
type parleyd struct {
	t       testing.TB
	dataDir string
	args    []string
	addr    string // "127.0.0.1:0" until the first start picked a port
	URL     string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{} // closed when the current process was reaped
	logs   *syncBuffer
}

// startParleyd starts parleyd on a free loopback port with a fresh data
// directory and extra flags; it is killed when the test ends.
func startParleyd(t testing.TB, args ...string) *parleyd {
	t.Helper()
	p := &parleyd{t: t, dataDir: t.TempDir(), args: args, addr: "127.0.0.1:0", logs: &syncBuffer{}}
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("parleyd log (%s):\n%s", p.dataDir, p.logs.String())
		}
	})
	p.start()
	return p
}

// start launches the process and waits until it serves.
func (p *parleyd) start() {
	p.t.Helper()
	args := append([]string{"-listen", p.addr, "-data-dir", p.dataDir, "-log-level", "debug"}, p.args...)
	cmd := exec.Command(parleydBin, args...)
	ready := &readyWriter{ready: make(chan string, 1)}
	cmd.Stdout = ready
	cmd.Stderr = p.logs
	require.NoError(p.t, cmd.Start())
	exited := make(chan struct{})
	// The reaper ends when the process does; kill and stop wait for it.
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()

	select {
	case url := <-ready.ready:
		p.URL = url
		p.addr = strings.TrimPrefix(url, "http://")
	case <-exited:
		p.t.Fatalf("parleyd exited during start-up:\n%s", p.logs.String())
	case <-time.After(waitTimeout):
		p.t.Fatalf("parleyd not ready after %s:\n%s", waitTimeout, p.logs.String())
	}
}

// kill ends the process with SIGKILL (no graceful shutdown) and reaps it.
func (p *parleyd) kill() { p.signal(syscall.SIGKILL) }

// stop ends the process with SIGTERM (graceful shutdown) and reaps it.
func (p *parleyd) stop() { p.signal(syscall.SIGTERM) }

func (p *parleyd) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(waitTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// restart starts the process again on the same port and data directory.
func (p *parleyd) restart() {
	p.t.Helper()
	p.start()
}

// readyWriter watches parleyd's stdout for the line announcing its URL.
type readyWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	ready chan string
	done  bool
}

const servingPrefix = "parleyd is serving on "

func (w *readyWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	if w.done {
		return len(b), nil
	}
	for _, line := range strings.Split(w.buf.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, servingPrefix); ok && strings.Contains(rest, " ") {
			w.done = true
			w.ready <- strings.Fields(rest)[0]
			break
		}
	}
	return len(b), nil
}

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
