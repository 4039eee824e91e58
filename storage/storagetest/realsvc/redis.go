package realsvc

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// RedisInstall is the command that installs the binary StartRedis
	// needs.
	RedisInstall = "apt-get update && apt-get install -y redis-server"

	// redisStartAttempts bounds the retries when the chosen port was taken
	// between picking it and the server binding it.
	redisStartAttempts = 5
	// redisReadyTimeout bounds the wait for a started server to answer
	// PING (it takes about 0.03 s; AOF replay after Restart a little more).
	redisReadyTimeout = 15 * time.Second
	// redisStopTimeout bounds the wait after SIGTERM before SIGKILL.
	redisStopTimeout = 10 * time.Second
)

// RedisOptions configures StartRedis. The zero value is a server that
// keeps nothing on disk.
type RedisOptions struct {
	// AppendOnly turns on the append-only file, so data written before
	// Restart is there after it (as a production Redis with persistence
	// behaves). Without it, Restart comes back empty.
	AppendOnly bool
}

// Redis is a throwaway redis-server on 127.0.0.1 with its working directory
// in a temporary directory. It is safe for concurrent use. Stop stops the
// server and deletes its directory.
type Redis struct {
	bin  string
	dir  string
	port int
	opts RedisOptions

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	stopped bool
}

// StartRedis starts a redis-server on a free loopback port and waits until
// it answers PING. A missing redis-server is an error naming the install
// command. The caller must Stop the server.
func StartRedis(opts RedisOptions) (*Redis, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("realsvc: redis: redis-server not found (install it with `%s`): %w", RedisInstall, err)
	}
	dir, err := os.MkdirTemp("", "redis")
	if err != nil {
		return nil, fmt.Errorf("realsvc: redis: %w", err)
	}
	r := &Redis{bin: bin, dir: dir, opts: opts}
	for attempt := 1; ; attempt++ {
		r.port, err = redisFreePort()
		if err == nil {
			err = r.start()
		}
		if err == nil {
			return r, nil
		}
		if attempt == redisStartAttempts {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

// StartRedisTB starts a server for one test and stops it in tb.Cleanup. A
// missing binary fails tb with the install command. Prefer one server per
// test binary (StartRedis in TestMain) unless the test restarts it.
func StartRedisTB(tb testing.TB, opts RedisOptions) *Redis {
	tb.Helper()
	r, err := StartRedis(opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := r.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return r
}

// Addr is the server's host:port.
func (r *Redis) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// URL is a redis:// URL for database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Stop shuts the server down (SIGTERM, which flushes the append-only file)
// and deletes its directory. It is idempotent.
func (r *Redis) Stop() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return nil
	}
	r.stopped = true
	err := r.terminate()
	return errors.Join(err, os.RemoveAll(r.dir))
}

// Halt stops the server without deleting its directory, like an outage:
// clients get connection errors until Restart starts it again.
func (r *Redis) Halt() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return errors.New("realsvc: redis: halt after stop")
	}
	return r.terminate()
}

// Restart stops the server (unless halted) and starts it again on the same port and
// directory, waiting until it answers PING. Clients see their connections
// drop. With AppendOnly the data survives; without it Redis comes back
// empty.
func (r *Redis) Restart() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return errors.New("realsvc: redis: restart after stop")
	}
	if err := r.terminate(); err != nil {
		return err
	}
	var err error
	// The port is free again at once (Redis binds with SO_REUSEADDR), but
	// another process may grab it in between: retry briefly.
	for attempt := 1; attempt <= redisStartAttempts; attempt++ {
		if err = r.start(); err == nil {
			return nil
		}
	}
	return err
}

// start runs redis-server on r.port and waits for PING. The caller holds
// r.mu (or owns r exclusively).
func (r *Redis) start() error {
	appendOnly := "no"
	if r.opts.AppendOnly {
		appendOnly = "yes"
	}
	logPath := filepath.Join(r.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("realsvc: redis: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(r.bin,
		"--bind", "127.0.0.1",
		"--port", strconv.Itoa(r.port),
		"--save", "",
		"--appendonly", appendOnly,
		"--daemonize", "no",
		"--dir", r.dir,
	)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The server dies with the test binary even if Stop is never called.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("realsvc: redis: start: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited

	deadline := time.Now().Add(redisReadyTimeout)
	for {
		select {
		case <-exited:
			r.cmd = nil
			return fmt.Errorf("realsvc: redis: server on port %d exited during start: %s", r.port, redisLogTail(logPath))
		default:
		}
		if redisPing(r.Addr()) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			_ = r.terminate()
			return fmt.Errorf("realsvc: redis: no PONG on port %d after %s: %s", r.port, redisReadyTimeout, redisLogTail(logPath))
		}
		time.Sleep(10 * time.Millisecond) // polling a process that has no readiness signal
	}
}

// terminate stops the running process, if any, and waits for it.
func (r *Redis) terminate() error {
	if r.cmd == nil {
		return nil
	}
	cmd, exited := r.cmd, r.exited
	r.cmd, r.exited = nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(redisStopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("realsvc: redis: server on port %d ignored SIGTERM for %s; killed", r.port, redisStopTimeout)
	}
}

// redisPing sends an inline PING and expects +PONG.
func redisPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	// -LOADING while an append-only file is replayed: not ready yet.
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("realsvc: redis: PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

// redisFreePort asks the kernel for a free loopback port. Another process
// may take it before redis-server binds it; StartRedis retries then.
func redisFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("realsvc: redis: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// redisLogTail is the end of the server log, for error messages.
func redisLogTail(path string) string {
	b, _ := os.ReadFile(path)
	const max = 2000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return strings.TrimSpace(string(b))
}
