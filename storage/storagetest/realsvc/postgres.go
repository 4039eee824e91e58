// Package realsvc starts the real external services Parley's backends talk
// to (PostgreSQL, Redis, ...) from their installed binaries, as throwaway
// processes on free loopback ports, for tests. There is no docker here:
// each service is one process in a temporary directory, started once per
// test binary (in TestMain) and stopped after.
//
// A missing binary is an error that names the command installing it; tests
// fail on it rather than skip.
package realsvc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	// PostgresInstall is the command that installs the binaries
	// StartPostgres needs.
	PostgresInstall = "apt-get install -y postgresql-15"

	// pgDefaultBinDir is where Debian's postgresql-15 package puts its
	// server binaries (not on PATH).
	pgDefaultBinDir = "/usr/lib/postgresql/15/bin"

	// pgStartAttempts bounds the retries when the chosen port was taken
	// between picking it and the server binding it.
	pgStartAttempts = 5
)

// Postgres is a throwaway PostgreSQL server: a fresh cluster (initdb) in a
// temporary directory, listening on 127.0.0.1 with trust authentication for
// the superuser "postgres", fsync off. It is safe for concurrent use. Stop
// stops the server and deletes its directory.
type Postgres struct {
	bin     string // directory holding initdb and pg_ctl
	dir     string // temporary root: data/, the socket, pg.log
	port    int
	asOwner bool // run the binaries as the postgres user (we are root)

	mu       sync.Mutex // serialises Restart and Stop
	stopped  bool
	stopOnce sync.Once
	stopErr  error
}

// StartPostgres initialises and starts a PostgreSQL server and waits until
// it accepts connections. It takes about 1–1.5 s. The binaries are looked
// up in $PARLEY_PG_BINDIR, then /usr/lib/postgresql/15/bin, then `pg_config
// --bindir`; when none has them the error names the install command. The
// caller must Stop the server.
func StartPostgres() (*Postgres, error) {
	bin, err := pgBinDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pg")
	if err != nil {
		return nil, fmt.Errorf("realsvc: postgres: %w", err)
	}
	p := &Postgres{bin: bin, dir: dir, asOwner: os.Geteuid() == 0}
	if err := p.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

// StartPostgresTB starts a server for one test (or benchmark) and stops it
// in tb.Cleanup. A missing binary fails tb with the install command.
// Prefer one server per test binary (StartPostgres in TestMain).
func StartPostgresTB(tb testing.TB) *Postgres {
	tb.Helper()
	p, err := StartPostgres()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := p.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return p
}

// DSN is the superuser's connection string for the "postgres" database.
func (p *Postgres) DSN() string { return p.dsn("postgres", "") }

// Port is the TCP port the server listens on (on 127.0.0.1).
func (p *Postgres) Port() int { return p.port }

// NewSchema creates a schema with a random name (t_<hex>) in the
// "postgres" database and returns a DSN whose search_path is that schema
// alone, so everything a store creates lands in it. This is the cheap way
// to give each test an empty store (a few milliseconds); the schema is
// dropped in tb.Cleanup.
func (p *Postgres) NewSchema(tb testing.TB) string {
	tb.Helper()
	name := "t_" + pgRandomHex()
	p.admin(tb, "postgres", "CREATE SCHEMA "+name)
	tb.Cleanup(func() {
		// The server may be gone already when TestMain stopped it.
		_ = p.exec(context.Background(), "postgres", "DROP SCHEMA IF EXISTS "+name+" CASCADE")
	})
	return p.dsn("postgres", name)
}

// NewDatabase creates an empty database (t_<hex>, from template0) and
// returns its DSN. It is dearer than NewSchema (tens of milliseconds): use
// it where a test needs a whole database, e.g. for database-wide advisory
// locks. The database is dropped in tb.Cleanup.
func (p *Postgres) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := "t_" + pgRandomHex()
	p.admin(tb, "postgres", "CREATE DATABASE "+name+" TEMPLATE template0")
	tb.Cleanup(func() {
		_ = p.exec(context.Background(), "postgres", "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return p.dsn(name, "")
}

// Restart stops the server (fast shutdown: open sessions are ended, as a
// crash or a failover ends them) and starts it again on the same port and
// data directory, waiting until it accepts connections. Committed data
// survives. Clients see their connections drop and must reconnect. Restart
// after Stop is an error.
func (p *Postgres) Restart() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return errors.New("realsvc: postgres: restart after stop")
	}
	if err := p.pgCtl("-D", p.dataDir(), "-m", "fast", "-w", "-t", "60", "stop"); err != nil {
		return fmt.Errorf("realsvc: postgres: restart: %w", err)
	}
	if err := p.pgCtl("-D", p.dataDir(), "-l", p.logFile(), "-w", "-t", "60", "start", "-o", p.serverOptions(p.port)); err != nil {
		log, _ := os.ReadFile(p.logFile())
		return fmt.Errorf("realsvc: postgres: restart: %w\n%s", err, log)
	}
	return nil
}

// Stop stops the server (fast shutdown: open sessions are ended) and
// deletes its directory. It is idempotent.
func (p *Postgres) Stop() error {
	p.stopOnce.Do(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.stopped = true
		err := p.pgCtl("-D", p.dataDir(), "-m", "fast", "-w", "-t", "60", "stop")
		p.stopErr = errors.Join(err, os.RemoveAll(p.dir))
		if p.stopErr != nil {
			p.stopErr = fmt.Errorf("realsvc: postgres: stop: %w", p.stopErr)
		}
	})
	return p.stopErr
}

func (p *Postgres) start() error {
	if p.asOwner {
		// initdb refuses to run as root: the cluster belongs to postgres,
		// which must be able to write the directory (and traverse /tmp).
		if err := pgChown(p.dir); err != nil {
			return err
		}
	}
	if err := os.Chmod(p.dir, 0o755); err != nil { //nolint:gosec // postgres must traverse it
		return fmt.Errorf("realsvc: postgres: %w", err)
	}
	if out, err := p.run("initdb", "-D", p.dataDir(), "-U", "postgres", "--auth=trust",
		"-E", "UTF8", "--locale=C.UTF-8", "--no-sync"); err != nil {
		return fmt.Errorf("realsvc: postgres: initdb: %w\n%s", err, out)
	}
	var lastErr error
	for range pgStartAttempts {
		port, err := pgFreePort()
		if err != nil {
			return err
		}
		err = p.pgCtl("-D", p.dataDir(), "-l", p.logFile(), "-w", "-t", "60", "start", "-o", p.serverOptions(port))
		if err == nil {
			p.port = port
			return nil
		}
		lastErr = err
		log, _ := os.ReadFile(p.logFile())
		if !strings.Contains(string(log), "could not bind") && !strings.Contains(string(log), "already in use") {
			break
		}
	}
	log, _ := os.ReadFile(p.logFile())
	return fmt.Errorf("realsvc: postgres: start: %w\n%s", lastErr, log)
}

func (p *Postgres) pgCtl(args ...string) error {
	out, err := p.run("pg_ctl", args...)
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %w\n%s", args[len(args)-1], err, out)
	}
	return nil
}

// run runs one of the server binaries, as postgres when we are root.
func (p *Postgres) run(name string, args ...string) ([]byte, error) {
	path := filepath.Join(p.bin, name)
	var cmd *exec.Cmd
	if p.asOwner {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	// pg_ctl start leaves the postmaster running with our stdout unless
	// it is redirected: CombinedOutput would wait for it forever. The
	// server logs to -l instead; the pipe only holds pg_ctl's own words.
	f, err := os.CreateTemp("", "pgcmd")
	if err != nil {
		return nil, err
	}
	defer func() { _ = os.Remove(f.Name()); _ = f.Close() }()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Dir = p.dir
	err = cmd.Run()
	out, _ := os.ReadFile(f.Name())
	return out, err
}

// serverOptions are the postgres command-line options for a server on port.
// fsync off: a throwaway cluster need not survive a power cut, and the tests
// and benchmarks run at memory speed.
func (p *Postgres) serverOptions(port int) string {
	return fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s -c fsync=off "+
		"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200", port, p.dir)
}

func (p *Postgres) dataDir() string { return filepath.Join(p.dir, "data") }
func (p *Postgres) logFile() string { return filepath.Join(p.dir, "pg.log") }

func (p *Postgres) dsn(database, schema string) string {
	u := url.URL{
		Scheme: "postgres",
		User:   url.User("postgres"),
		Host:   net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)),
		Path:   "/" + database,
	}
	q := url.Values{"sslmode": {"disable"}}
	if schema != "" {
		q.Set("search_path", schema)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// admin runs one statement as the superuser in database, failing tb on
// error.
func (p *Postgres) admin(tb testing.TB, database, stmt string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.exec(ctx, database, stmt); err != nil {
		tb.Fatalf("realsvc: postgres: %s: %v", stmt, err)
	}
}

func (p *Postgres) exec(ctx context.Context, database, stmt string) error {
	conn, err := pgx.Connect(ctx, p.dsn(database, ""))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close(context.Background()) }()
	_, err = conn.Exec(ctx, stmt)
	return err
}

// pgBinDir finds the directory of initdb and pg_ctl.
func pgBinDir() (string, error) {
	dirs := []string{os.Getenv("PARLEY_PG_BINDIR"), pgDefaultBinDir}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dirs = append(dirs, strings.TrimSpace(string(out)))
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("realsvc: postgres: initdb and pg_ctl not found in %s; install them with: %s",
		pgDefaultBinDir, PostgresInstall)
}

// pgChown gives dir to the postgres user.
func pgChown(dir string) error {
	u, err := user.Lookup("postgres")
	if err != nil {
		return fmt.Errorf("realsvc: postgres: no postgres user (install the server with: %s): %w", PostgresInstall, err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err := errors.Join(err1, err2); err != nil {
		return fmt.Errorf("realsvc: postgres: %w", err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		return fmt.Errorf("realsvc: postgres: %w", err)
	}
	return nil
}

// pgFreePort returns a loopback port that was free a moment ago.
func pgFreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("realsvc: postgres: free port: %w", err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func pgRandomHex() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
