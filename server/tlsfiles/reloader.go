package tlsfiles

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"
)

// racyWindow is how recently a file may have been modified for a later
// change to leave its size and modification time as they were: file
// system timestamps can be as coarse as a few milliseconds (ext4), a
// second (ext3, HFS+) or two (FAT). Until both files are older than this,
// the Reloader re-reads them at every handshake instead of trusting their
// unchanged stat; the same problem as "racy git".
const racyWindow = 2 * time.Second

// Reloader hands out the key pair in Config's files and loads it again
// when the files change. It is safe for concurrent use; handshakes
// calling GetCertificate at once wait for one of them to reload.
//
// Every handshake stats both files (following symlinks), and loads them
// again when either's identity (device and inode), size or modification
// time differs from the last attempt's. Stat on every handshake rather
// than on a timer, because it is cheap: 7-9 µs through the Secret's
// symlinks (BenchmarkGetCertificate), under one percent of a full
// handshake's key exchange and signatures (1.1-1.9 ms for client and
// server together, BenchmarkHandshake; both on a 2-CPU amd64 VM), and
// resumed TLS 1.3 sessions do not call GetCertificate at all. In return a
// renewed certificate is served from the first handshake after it lands,
// there is no goroutine to own and stop, and tests need not wait out an
// interval.
//
// The kubelet updates a mounted Secret by writing both files into a new
// directory and swapping a symlink to it, so a handshake sees the old
// pair or the new one, and the new files are new inodes. Files rewritten
// in place are caught by their modification time and size; for the
// moment two writes may share both, see racyWindow. Files written one
// after the other (cert, then key) may be read half-updated: that pair
// does not load, and the key's own change makes the next handshake try
// again.
type Reloader struct {
	cfg    Config
	logger *slog.Logger

	mu   sync.Mutex
	cert *tls.Certificate // the last pair that loaded; never nil after New
	// certStat and keyStat are the files as of the last attempt to load
	// them, which may have failed; nil when they could not be stat'ed.
	certStat, keyStat os.FileInfo
	// settled says both files were older than racyWindow at that attempt,
	// so that stats like theirs mean contents like theirs.
	settled bool
	// failure is the last failed attempt's error, logged once however
	// many handshakes fail the same way; empty after a success.
	failure string
}

// New loads the key pair in cfg's files, which must both be set. It fails,
// naming the file, when either cannot be read, does not hold PEM of the
// right kind, or the key does not match the certificate.
func New(cfg Config, logger *slog.Logger) (*Reloader, error) {
	if !cfg.Enabled() {
		return nil, errors.New("tlsfiles: cert_file and key_file must both be set")
	}
	r := &Reloader{cfg: cfg, logger: logger}
	if _, err := r.refresh(time.Now()); err != nil {
		return nil, err
	}
	r.logger.Info("tls certificate loaded", r.leafAttrs()...)
	return r, nil
}

// GetCertificate returns the pair in the files now, or, when the files
// changed and no longer load, the last pair that did (the failure is
// logged at Error once). It never returns an error, so a broken update
// never fails handshakes. It fits tls.Config.GetCertificate; the
// ClientHelloInfo is unused and may be nil. The returned certificate must
// not be modified.
func (r *Reloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	replaced, err := r.refresh(time.Now())
	switch {
	case err != nil:
		if msg := err.Error(); msg != r.failure {
			r.failure = msg
			r.logger.Error("tls certificate files changed but do not load; serving the previous certificate", append(r.leafAttrs(), "err", err)...)
		}
	case replaced:
		r.failure = ""
		r.logger.Info("tls certificate reloaded", r.leafAttrs()...)
	default:
		r.failure = ""
	}
	return r.cert, nil
}

// refresh loads the pair again if either file changed since the last
// attempt, or may have (see racyWindow), and reports whether that
// replaced r.cert. r.mu must be held.
func (r *Reloader) refresh(now time.Time) (bool, error) {
	certStat, certErr := os.Stat(r.cfg.CertFile)
	keyStat, keyErr := os.Stat(r.cfg.KeyFile)
	if certErr != nil || keyErr != nil {
		// Files that come back are new, whatever their stat says.
		r.certStat, r.keyStat = nil, nil
		if certErr != nil {
			return false, fmt.Errorf("tlsfiles: cert_file: %w", certErr)
		}
		return false, fmt.Errorf("tlsfiles: key_file: %w", keyErr)
	}
	if r.settled && unchanged(r.certStat, certStat) && unchanged(r.keyStat, keyStat) {
		return false, nil
	}
	// Stat before reading, so that a write after the stat shows up as a
	// change at the next handshake.
	r.certStat, r.keyStat = certStat, keyStat
	r.settled = now.Sub(certStat.ModTime()) > racyWindow && now.Sub(keyStat.ModTime()) > racyWindow
	cert, err := load(r.cfg)
	if err != nil {
		return false, err
	}
	if r.cert != nil && slices.EqualFunc(r.cert.Certificate, cert.Certificate, bytes.Equal) {
		// The same chain means the same public key, so the same key.
		return false, nil
	}
	r.cert = cert
	return true, nil
}

// leafAttrs describes the current certificate for the log. r.mu must be
// held, or r not yet shared.
func (r *Reloader) leafAttrs() []any {
	attrs := []any{"cert_file", r.cfg.CertFile}
	if r.cert != nil && r.cert.Leaf != nil {
		attrs = append(attrs, "serial", r.cert.Leaf.SerialNumber.String(), "not_after", r.cert.Leaf.NotAfter)
	}
	return attrs
}

// load reads and parses the pair in cfg's files.
func load(cfg Config) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(cfg.CertFile)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: key_file: %w", err)
	}
	// X509KeyPair's errors say which input is wrong ("certificate input",
	// "key input", or a key that does not match); the files are named here.
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tlsfiles: cert_file %s, key_file %s: %w", cfg.CertFile, cfg.KeyFile, err)
	}
	return &cert, nil
}

// unchanged reports whether cur is the file last was, unmodified as far as
// its stat can tell.
func unchanged(last, cur os.FileInfo) bool {
	return last != nil && os.SameFile(last, cur) && last.Size() == cur.Size() && last.ModTime().Equal(cur.ModTime())
}
