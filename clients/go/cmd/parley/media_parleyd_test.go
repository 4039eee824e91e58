package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These helpers run the real parleyd for the media tests, the way
// server/internal/testserver does for the server's own tests (which
// clients/go cannot import; clients/go/parley has a copy of this file):
// built once per test binary with -race, started on 127.0.0.1:0 with a data
// directory of its own, ready once it prints the address it serves on.

// servingLine is parleyd's stdout line naming its address, printed once it
// accepts connections.
var servingLine = regexp.MustCompile(`serving on (http://\S+)`)

var parleydBuild struct {
	once sync.Once
	dir  string // removed by TestMain
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if parleydBuild.dir != "" {
		_ = os.RemoveAll(parleydBuild.dir)
	}
	os.Exit(code)
}

// parleyd is a running server.
type parleyd struct {
	url     string
	dataDir string
}

// startParleyd starts parleyd on the embedded store and returns once it
// serves; the test's cleanup stops it (SIGTERM, then SIGKILL after 30s).
func startParleyd(t *testing.T) *parleyd {
	t.Helper()
	parleydBuild.once.Do(func() {
		parleydBuild.dir, parleydBuild.err = os.MkdirTemp("", "parley-sdk-test-")
		if parleydBuild.err != nil {
			return
		}
		parleydBuild.path = filepath.Join(parleydBuild.dir, "parleyd")
		cmd := exec.Command("go", "build", "-race", "-o", parleydBuild.path, "github.com/parley-im/parley/server/cmd/parleyd")
		if out, err := cmd.CombinedOutput(); err != nil {
			parleydBuild.err = fmt.Errorf("go build -race ./server/cmd/parleyd: %w\n%s", err, out)
		}
	})
	if parleydBuild.err != nil {
		t.Fatal(parleydBuild.err)
	}
	dataDir := t.TempDir()
	cmd := exec.Command(parleydBuild.path, "-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0",
		"-data-dir", dataDir, "-log-level", "warn", "-web-dir", "")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PARLEY_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	urls := make(chan string, 1)
	// The reader ends when the process closes its stdout, at exit.
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			var exitErr *exec.ExitError
			if err != nil && !errors.As(err, &exitErr) {
				t.Errorf("parleyd: %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			err := <-exited
			t.Errorf("parleyd did not stop within 30s, killed: %v", err)
		}
		if t.Failed() {
			t.Logf("parleyd stderr:\n%s", stderr.String())
		}
	})
	select {
	case url := <-urls:
		return &parleyd{url: url, dataDir: dataDir}
	case err := <-exited:
		t.Fatalf("parleyd exited before serving: %v\n%s", err, stderr.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("parleyd did not serve within 60s\n%s", stderr.String())
	}
	return nil
}
