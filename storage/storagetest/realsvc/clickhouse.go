package realsvc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	// ClickHouseInstall is the command that installs the binary
	// StartClickHouse needs (Debian's package: server 18.16.1).
	ClickHouseInstall = "apt-get update && apt-get install -y clickhouse-server clickhouse-client"

	// chStartAttempts bounds the retries when a chosen port was taken
	// between picking it and the server binding it.
	chStartAttempts = 5
	// chReadyTimeout bounds the wait for a started server to answer
	// /ping (it takes well under a second; a busy machine takes longer).
	chReadyTimeout = 30 * time.Second
	// chStopTimeout bounds the wait after SIGTERM before SIGKILL. The
	// server waits up to 5 s for running queries before it exits.
	chStopTimeout = 20 * time.Second
	// chHTTPTimeout bounds one administrative HTTP request.
	chHTTPTimeout = 10 * time.Second
)

// chConfig is the server's config.xml: loopback only, every path under
// the server's own directory (absolute, directories with a trailing
// slash, as 18.16 requires), small caches because the machine is shared.
// The arguments are the directory, the native port and the HTTP port.
const chConfig = `<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>%[1]s/server.log</log>
        <errorlog>%[1]s/server.err.log</errorlog>
        <console>0</console>
    </logger>
    <listen_host>127.0.0.1</listen_host>
    <tcp_port>%[2]d</tcp_port>
    <http_port>%[3]d</http_port>
    <path>%[1]s/data/</path>
    <tmp_path>%[1]s/tmp/</tmp_path>
    <user_files_path>%[1]s/user_files/</user_files_path>
    <format_schema_path>%[1]s/format_schemas/</format_schema_path>
    <users_config>%[1]s/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <mlock_executable>false</mlock_executable>
</yandex>
`

// chUsers is the server's users.xml: the passwordless user "default",
// from loopback only, without quotas.
const chUsers = `<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>2000000000</max_memory_usage>
        </default>
    </profiles>
    <users>
        <default>
            <password></password>
            <networks>
                <ip>127.0.0.1</ip>
            </networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
`

// ClickHouse is a throwaway clickhouse-server on 127.0.0.1 with its
// configuration and data in a temporary directory. The user is "default"
// without a password. It is safe for concurrent use. Stop stops the
// server and deletes its directory.
type ClickHouse struct {
	bin string
	dir string
	// The ports are chosen before StartClickHouse returns and kept by
	// Restart, so they need no lock.
	tcpPort  int
	httpPort int

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	stopped bool
}

// StartClickHouse starts a clickhouse-server on free loopback ports and
// waits until it answers /ping. A missing clickhouse-server is an error
// naming the install command. The caller must Stop the server.
func StartClickHouse() (*ClickHouse, error) {
	bin, err := exec.LookPath("clickhouse-server")
	if err != nil {
		return nil, fmt.Errorf("realsvc: clickhouse: clickhouse-server not found (install it with `%s`): %w", ClickHouseInstall, err)
	}
	dir, err := os.MkdirTemp("", "clickhouse")
	if err != nil {
		return nil, fmt.Errorf("realsvc: clickhouse: %w", err)
	}
	// The server refuses relative paths.
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, fmt.Errorf("realsvc: clickhouse: %w", err)
	}
	c := &ClickHouse{bin: bin, dir: dir}
	if err := os.WriteFile(filepath.Join(dir, "users.xml"), []byte(chUsers), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("realsvc: clickhouse: %w", err)
	}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(2)
		if err != nil {
			err = fmt.Errorf("realsvc: clickhouse: %w", err)
		} else {
			c.tcpPort, c.httpPort = ports[0], ports[1]
			err = c.start()
		}
		if err == nil {
			return c, nil
		}
		if attempt == chStartAttempts {
			_ = os.RemoveAll(dir)
			return nil, err
		}
	}
}

// StartClickHouseTB starts a server for one test (or benchmark) and stops
// it in tb.Cleanup. A missing binary fails tb with the install command.
// Prefer one server per test binary (StartClickHouse in TestMain) unless
// the test halts or restarts it.
func StartClickHouseTB(tb testing.TB) *ClickHouse {
	tb.Helper()
	c, err := StartClickHouse()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return c
}

// Addr is the native protocol's host:port (what clickhouse-go dials).
// It stays the same across Halt and Restart.
func (c *ClickHouse) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.tcpPort))
}

// HTTPAddr is the HTTP interface's host:port.
func (c *ClickHouse) HTTPAddr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.httpPort))
}

// NewDatabase creates a database with a random name (t_<hex>) and returns
// the name: the cheap way to give each test an empty archive. It is
// dropped in tb.Cleanup (unless the server is gone by then).
func (c *ClickHouse) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := "t_" + pgRandomHex()
	if err := c.Exec(context.Background(), "CREATE DATABASE "+name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		// The server may be halted or stopped already.
		_ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name)
	})
	return name
}

// Exec runs one statement through the HTTP interface, discarding its
// output. It is for administration and assertions in tests, outside the
// driver under test.
func (c *ClickHouse) Exec(ctx context.Context, stmt string) error {
	_, err := c.Query(ctx, stmt)
	return err
}

// Query runs one statement through the HTTP interface and returns its
// output (TabSeparated), trimmed.
func (c *ClickHouse) Query(ctx context.Context, stmt string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, chHTTPTimeout)
	defer cancel()
	u := "http://" + c.HTTPAddr() + "/?query=" + url.QueryEscape(stmt)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "", fmt.Errorf("realsvc: clickhouse: %w", err)
	}
	req.Close = true // an idle keep-alive connection delays the server's shutdown by seconds
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("realsvc: clickhouse: %s: %w", stmt, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("realsvc: clickhouse: %s: %w", stmt, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("realsvc: clickhouse: %s: %s: %s", stmt, resp.Status, strings.TrimSpace(string(body)))
	}
	return strings.TrimSpace(string(body)), nil
}

// Halt stops the server (SIGTERM) without deleting its directory, like
// an outage: clients get connection errors until Restart starts it again
// on the same ports and data.
func (c *ClickHouse) Halt() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("realsvc: clickhouse: halt after stop")
	}
	return c.terminate()
}

// Restart stops the server (unless halted) and starts it again on the
// same ports and data directory, waiting until it answers /ping. Clients
// see their connections drop; what was inserted before survives.
func (c *ClickHouse) Restart() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return errors.New("realsvc: clickhouse: restart after stop")
	}
	if err := c.terminate(); err != nil {
		return err
	}
	var err error
	// Another process may grab a port in between: retry briefly.
	for attempt := 1; attempt <= chStartAttempts; attempt++ {
		if err = c.start(); err == nil {
			return nil
		}
	}
	return err
}

// Stop shuts the server down (SIGTERM) and deletes its directory. It is
// idempotent.
func (c *ClickHouse) Stop() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return nil
	}
	c.stopped = true
	err := c.terminate()
	return errors.Join(err, os.RemoveAll(c.dir))
}

// start writes config.xml for the current ports, runs the server and
// waits for /ping. The caller holds c.mu (or owns c exclusively).
func (c *ClickHouse) start() error {
	config := filepath.Join(c.dir, "config.xml")
	if err := os.WriteFile(config, fmt.Appendf(nil, chConfig, c.dir, c.tcpPort, c.httpPort), 0o600); err != nil {
		return fmt.Errorf("realsvc: clickhouse: %w", err)
	}
	logPath := filepath.Join(c.dir, "stdout.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("realsvc: clickhouse: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(c.bin, "--config-file="+config)
	cmd.Dir = c.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// The server dies with the test binary even if Stop is never called.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("realsvc: clickhouse: start: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	c.cmd, c.exited = cmd, exited

	errLog := filepath.Join(c.dir, "server.err.log")
	pingURL := "http://" + c.HTTPAddr() + "/ping"
	deadline := time.Now().Add(chReadyTimeout)
	for {
		select {
		case <-exited:
			c.cmd, c.exited = nil, nil
			return fmt.Errorf("realsvc: clickhouse: server (native port %d, http port %d) exited during start: %s %s",
				c.tcpPort, c.httpPort, logTail(logPath), logTail(errLog))
		default:
		}
		if chPing(pingURL) == nil {
			return nil
		}
		if time.Now().After(deadline) {
			_ = c.terminate()
			return fmt.Errorf("realsvc: clickhouse: no answer on %s after %s: %s", pingURL, chReadyTimeout, logTail(errLog))
		}
		time.Sleep(20 * time.Millisecond) // polling a process that has no readiness signal
	}
}

// terminate stops the running process, if any, and waits for it.
func (c *ClickHouse) terminate() error {
	if c.cmd == nil {
		return nil
	}
	cmd, exited := c.cmd, c.exited
	c.cmd, c.exited = nil, nil
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(chStopTimeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("realsvc: clickhouse: server on port %d ignored SIGTERM for %s; killed", c.tcpPort, chStopTimeout)
	}
}

// chPing asks the HTTP interface's /ping, which answers "Ok." once the
// server accepts queries.
func chPing(pingURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, pingURL, nil)
	if err != nil {
		return err
	}
	req.Close = true // an idle keep-alive connection delays the server's shutdown by seconds
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "Ok." {
		return fmt.Errorf("realsvc: clickhouse: /ping answered %s %q", resp.Status, body)
	}
	return nil
}
