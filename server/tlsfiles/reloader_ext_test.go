package tlsfiles_test

import (
	"bytes"
	"crypto/tls"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/tlsfiles"
	"github.com/parley-im/parley/server/tlsfiles/tlsfilestest"
)

func TestNew(t *testing.T) {
	t.Parallel()
	ca := tlsfilestest.NewCA(t)
	a, b := ca.Issue(t, 1), ca.Issue(t, 2)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		path := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		return path
	}
	aCert, aKey, bKey := write("a.crt", a.Cert), write("a.key", a.Key), write("b.key", b.Key)
	garbage := write("garbage", []byte("not PEM\n"))
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name     string
		cfg      tlsfiles.Config
		wantErrs []string // all in the error
	}{
		{name: "good", cfg: tlsfiles.Config{CertFile: aCert, KeyFile: aKey}},
		{name: "not_configured", cfg: tlsfiles.Config{CertFile: aCert}, wantErrs: []string{"cert_file and key_file"}},
		{name: "missing_cert_file", cfg: tlsfiles.Config{CertFile: missing, KeyFile: aKey}, wantErrs: []string{"cert_file", missing, "no such file"}},
		{name: "missing_key_file", cfg: tlsfiles.Config{CertFile: aCert, KeyFile: missing}, wantErrs: []string{"key_file", missing, "no such file"}},
		{name: "cert_not_pem", cfg: tlsfiles.Config{CertFile: garbage, KeyFile: aKey}, wantErrs: []string{"cert_file " + garbage, "certificate input"}},
		{name: "key_not_pem", cfg: tlsfiles.Config{CertFile: aCert, KeyFile: garbage}, wantErrs: []string{"key_file " + garbage, "key input"}},
		{name: "key_of_another_certificate", cfg: tlsfiles.Config{CertFile: aCert, KeyFile: bKey}, wantErrs: []string{aCert, bKey, "does not match"}},
		{name: "cert_and_key_swapped", cfg: tlsfiles.Config{CertFile: aKey, KeyFile: aCert}, wantErrs: []string{"cert_file " + aKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := tlsfiles.New(tt.cfg, discard())
			if len(tt.wantErrs) > 0 {
				require.Error(t, err)
				for _, want := range tt.wantErrs {
					require.ErrorContains(t, err, want)
				}
				return
			}
			require.NoError(t, err)
			requireSerial(t, r, a.Serial)
		})
	}
}

func TestReloaderPicksUpNewFiles(t *testing.T) {
	t.Parallel()
	ca := tlsfilestest.NewCA(t)

	t.Run("kubelet_symlink_swap", func(t *testing.T) {
		t.Parallel()
		secret := tlsfilestest.NewSecretDir(t)
		a, b := ca.Issue(t, 1), ca.Issue(t, 2)
		secret.Write(t, a.Cert, a.Key)
		log := new(logBuffer)
		r, err := tlsfiles.New(tlsfiles.Config{CertFile: secret.CertFile(), KeyFile: secret.KeyFile()}, log.logger())
		require.NoError(t, err)
		requireSerial(t, r, a.Serial)
		requireSerial(t, r, a.Serial)

		secret.Write(t, b.Cert, b.Key)
		requireSerial(t, r, b.Serial)
		require.Equal(t, 1, strings.Count(log.String(), "tls certificate reloaded"), log.String())
		require.Contains(t, log.String(), "serial=2")
	})

	t.Run("in_place_rewrite", func(t *testing.T) {
		t.Parallel()
		a, b := ca.Issue(t, 1), ca.Issue(t, 2)
		// Files written long ago: only a changed stat makes the Reloader
		// read them again.
		cfg := writePair(t, a, time.Now().Add(-time.Hour))
		r, err := tlsfiles.New(cfg, discard())
		require.NoError(t, err)
		requireSerial(t, r, a.Serial)

		require.NoError(t, os.WriteFile(cfg.CertFile, b.Cert, 0o600))
		require.NoError(t, os.WriteFile(cfg.KeyFile, b.Key, 0o600))
		requireSerial(t, r, b.Serial)
	})

	t.Run("same_size_and_mtime_while_recent", func(t *testing.T) {
		t.Parallel()
		a, b := ca.Issue(t, 1), ca.Issue(t, 2)
		padToSameSize(&a, &b)
		// A modification time in the future is never settled, however
		// slowly this test runs: it stands for files written within the
		// file system's timestamp granularity.
		mtime := time.Now().Add(time.Hour)
		cfg := writePair(t, a, mtime)
		r, err := tlsfiles.New(cfg, discard())
		require.NoError(t, err)
		requireSerial(t, r, a.Serial)

		// Rewritten in place, with the stat exactly as it was.
		before, err := os.Stat(cfg.CertFile)
		require.NoError(t, err)
		writeFiles(t, cfg, b, mtime)
		after, err := os.Stat(cfg.CertFile)
		require.NoError(t, err)
		require.True(t, os.SameFile(before, after))
		require.Equal(t, before.Size(), after.Size())
		require.Equal(t, before.ModTime(), after.ModTime())
		requireSerial(t, r, b.Serial)
	})

	t.Run("settled_files_are_only_stated", func(t *testing.T) {
		t.Parallel()
		a, b := ca.Issue(t, 1), ca.Issue(t, 2)
		padToSameSize(&a, &b)
		mtime := time.Now().Add(-time.Hour)
		cfg := writePair(t, a, mtime)
		r, err := tlsfiles.New(cfg, discard())
		require.NoError(t, err)
		// Contents changed behind an unchanged stat (which no real
		// update does) go unnoticed: the files are not read per handshake.
		writeFiles(t, cfg, b, mtime)
		requireSerial(t, r, a.Serial)
		// Touching them is enough.
		now := time.Now()
		require.NoError(t, os.Chtimes(cfg.CertFile, now, now))
		requireSerial(t, r, b.Serial)
	})
}

func TestBrokenReplacementKeepsLastGood(t *testing.T) {
	t.Parallel()
	ca := tlsfilestest.NewCA(t)
	other := ca.Issue(t, 99)
	tests := []struct {
		name      string
		cert, key []byte
		wantLog   string
	}{
		{name: "garbage_cert", cert: []byte("garbage"), key: other.Key, wantLog: "certificate input"},
		{name: "garbage_key", cert: other.Cert, key: []byte("garbage"), wantLog: "key input"},
		{name: "empty_files", wantLog: "certificate input"},
		{name: "key_of_another_certificate", cert: ca.Issue(t, 3).Cert, key: other.Key, wantLog: "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a, c := ca.Issue(t, 1), ca.Issue(t, 2)
			secret := tlsfilestest.NewSecretDir(t)
			secret.Write(t, a.Cert, a.Key)
			log := new(logBuffer)
			r, err := tlsfiles.New(tlsfiles.Config{CertFile: secret.CertFile(), KeyFile: secret.KeyFile()}, log.logger())
			require.NoError(t, err)

			secret.Write(t, tt.cert, tt.key)
			for range 3 {
				requireSerial(t, r, a.Serial)
			}
			require.Equal(t, 1, strings.Count(log.String(), "level=ERROR"), "a lasting failure is logged once:\n%s", log)
			require.Contains(t, log.String(), tt.wantLog)
			require.Contains(t, log.String(), secret.CertFile())
			require.Contains(t, log.String(), "serial=1", "the log says which certificate is still served")

			// The next good update is picked up.
			secret.Write(t, c.Cert, c.Key)
			requireSerial(t, r, c.Serial)
			require.Contains(t, log.String(), "tls certificate reloaded")
		})
	}

	t.Run("files_removed", func(t *testing.T) {
		t.Parallel()
		a, c := ca.Issue(t, 1), ca.Issue(t, 2)
		log := new(logBuffer)
		cfg := writePair(t, a, time.Now().Add(-time.Hour))
		r, err := tlsfiles.New(cfg, log.logger())
		require.NoError(t, err)
		require.NoError(t, os.Remove(cfg.KeyFile))
		for range 3 {
			requireSerial(t, r, a.Serial)
		}
		require.Equal(t, 1, strings.Count(log.String(), "level=ERROR"), log.String())
		require.Contains(t, log.String(), "key_file")
		require.Contains(t, log.String(), cfg.KeyFile)

		writeFiles(t, cfg, c, time.Now().Add(-time.Hour))
		requireSerial(t, r, c.Serial)
	})
}

// Handshakes over real connections, concurrent with rotations, each see a
// whole pair that verifies (never one file of each), and those after the
// last rotation see its certificate.
func TestHandshakesDuringRotation(t *testing.T) {
	t.Parallel()
	ca := tlsfilestest.NewCA(t)
	secret := tlsfilestest.NewSecretDir(t)
	first := ca.Issue(t, 1)
	secret.Write(t, first.Cert, first.Key)
	r, err := tlsfiles.New(tlsfiles.Config{CertFile: secret.CertFile(), KeyFile: secret.KeyFile()}, discard())
	require.NoError(t, err)

	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12})
	require.NoError(t, err)
	var servers sync.WaitGroup
	servers.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return // the listener closed
			}
			servers.Go(func() {
				defer conn.Close()
				// The client reports the failure, if any.
				_ = conn.(*tls.Conn).Handshake()
			})
		}
	})
	defer servers.Wait()
	defer ln.Close()

	handshake := func() (*big.Int, error) {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12})
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber, nil
	}

	const rotations = 20
	pairs := make([]tlsfilestest.Pair, rotations)
	for i := range pairs {
		pairs[i] = ca.Issue(t, int64(i+2))
	}
	stop := make(chan struct{})
	var clients sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		clients.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := handshake(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for _, p := range pairs {
		secret.Write(t, p.Cert, p.Key)
	}
	close(stop)
	clients.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	serial, err := handshake()
	require.NoError(t, err)
	require.Equal(t, pairs[rotations-1].Serial, serial)
}

// BenchmarkGetCertificate is the cost a handshake pays to check for new
// files: two stats of files that did not change.
func BenchmarkGetCertificate(b *testing.B) {
	ca := tlsfilestest.NewCA(b)
	secret := tlsfilestest.NewSecretDir(b)
	p := ca.Issue(b, 1)
	secret.Write(b, p.Cert, p.Key)
	for _, name := range []string{"..v1/tls.crt", "..v1/tls.key"} {
		old := time.Now().Add(-time.Hour)
		require.NoError(b, os.Chtimes(filepath.Join(filepath.Dir(secret.CertFile()), name), old, old))
	}
	r, err := tlsfiles.New(tlsfiles.Config{CertFile: secret.CertFile(), KeyFile: secret.KeyFile()}, discard())
	require.NoError(b, err)
	for b.Loop() {
		if _, err := r.GetCertificate(nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHandshake is a full TLS 1.3 handshake (ECDSA P-256, X25519)
// through the Reloader, client and server both in this process, to compare
// with BenchmarkGetCertificate.
func BenchmarkHandshake(b *testing.B) {
	ca := tlsfilestest.NewCA(b)
	secret := tlsfilestest.NewSecretDir(b)
	p := ca.Issue(b, 1)
	secret.Write(b, p.Cert, p.Key)
	r, err := tlsfiles.New(tlsfiles.Config{CertFile: secret.CertFile(), KeyFile: secret.KeyFile()}, discard())
	require.NoError(b, err)
	serverCfg := &tls.Config{GetCertificate: r.GetCertificate, MinVersion: tls.VersionTLS12}
	clientCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	for b.Loop() {
		c, s := net.Pipe()
		server := tls.Server(s, serverCfg)
		done := make(chan error, 1)
		go func() { done <- server.Handshake() }()
		client := tls.Client(c, clientCfg)
		if err := client.Handshake(); err != nil {
			b.Fatal(err)
		}
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		// Not the tls.Conns' Close, which waits for the peer to read a
		// close_notify nobody reads here.
		_ = c.Close()
		_ = s.Close()
	}
}

// requireSerial fails unless r hands out the certificate with serial.
func requireSerial(tb testing.TB, r *tlsfiles.Reloader, serial *big.Int) {
	tb.Helper()
	cert, err := r.GetCertificate(nil)
	require.NoError(tb, err)
	require.NotNil(tb, cert.Leaf)
	require.Equal(tb, serial, cert.Leaf.SerialNumber)
}

// writePair writes p to tls.crt and tls.key in a new directory, dated
// mtime, and returns their Config.
func writePair(tb testing.TB, p tlsfilestest.Pair, mtime time.Time) tlsfiles.Config {
	tb.Helper()
	dir := tb.TempDir()
	cfg := tlsfiles.Config{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	writeFiles(tb, cfg, p, mtime)
	return cfg
}

// writeFiles overwrites cfg's files in place with p, dated mtime.
func writeFiles(tb testing.TB, cfg tlsfiles.Config, p tlsfilestest.Pair, mtime time.Time) {
	tb.Helper()
	require.NoError(tb, os.WriteFile(cfg.CertFile, p.Cert, 0o600))
	require.NoError(tb, os.WriteFile(cfg.KeyFile, p.Key, 0o600))
	require.NoError(tb, os.Chtimes(cfg.CertFile, mtime, mtime))
	require.NoError(tb, os.Chtimes(cfg.KeyFile, mtime, mtime))
}

// padToSameSize appends newlines (which PEM parsing skips) to the shorter
// certificate and key so that a and b's files have the same sizes.
func padToSameSize(a, b *tlsfilestest.Pair) {
	pad := func(x, y *[]byte) {
		for len(*x) < len(*y) {
			*x = append(*x, '\n')
		}
		for len(*y) < len(*x) {
			*y = append(*y, '\n')
		}
	}
	pad(&a.Cert, &b.Cert)
	pad(&a.Key, &b.Key)
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// logBuffer collects text log lines; safe for concurrent use.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Writer(l), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
