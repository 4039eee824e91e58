// Package tlsfilestest makes certificates and mounted-Secret directories
// for tests of TLS serving: a throwaway CA that issues loopback server
// certificates, and a directory laid out and updated the way the kubelet
// writes a kubernetes.io/tls Secret into a pod (tls.crt and tls.key as
// symlinks through ..data, swapped atomically on update).
//
// It is for tests only: nothing but _test.go files imports it.
package tlsfilestest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a self-signed certificate authority. It is safe for concurrent use.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Pair is a PEM certificate and its PEM private key, as tls.crt and
// tls.key hold them.
type Pair struct {
	Cert, Key []byte
	// Serial is the certificate's serial number, which tells pairs apart
	// in a handshake's PeerCertificates.
	Serial *big.Int
}

// NewCA makes a CA valid from an hour ago for a day.
func NewCA(tb testing.TB) *CA {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("tlsfilestest: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "parley test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("tlsfilestest: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("tlsfilestest: %v", err)
	}
	return &CA{cert: cert, key: key}
}

// Pool is a pool holding only the CA, for a client's RootCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// Issue makes a server certificate for 127.0.0.1 and localhost with the
// given serial number (each pair of a test should have its own), with a
// fresh ECDSA P-256 key.
func (ca *CA) Issue(tb testing.TB, serial int64) Pair {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("tlsfilestest: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("tlsfilestest: %v", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("tlsfilestest: %v", err)
	}
	return Pair{
		Cert:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		Key:    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		Serial: big.NewInt(serial),
	}
}

// SecretDir is a directory holding tls.crt and tls.key as the kubelet
// mounts a Secret: each is a symlink to ..data/<name>, ..data is a symlink
// to a directory of the current version, and an update writes a new
// version directory, then renames a new ..data symlink over the old one,
// so that a reader sees either the old pair or the new one, never a mix.
// It is not safe for concurrent Writes.
type SecretDir struct {
	dir     string
	version int
}

// NewSecretDir makes an empty SecretDir in a test temporary directory;
// Write puts the first pair in.
func NewSecretDir(tb testing.TB) *SecretDir {
	tb.Helper()
	return &SecretDir{dir: tb.TempDir()}
}

// CertFile is the path of tls.crt.
func (s *SecretDir) CertFile() string { return filepath.Join(s.dir, "tls.crt") }

// KeyFile is the path of tls.key.
func (s *SecretDir) KeyFile() string { return filepath.Join(s.dir, "tls.key") }

// Write replaces the Secret's contents atomically with cert and key (which
// need not be a valid pair, to test a broken update).
func (s *SecretDir) Write(tb testing.TB, cert, key []byte) {
	tb.Helper()
	if err := s.write(cert, key); err != nil {
		tb.Fatalf("tlsfilestest: %v", err)
	}
}

func (s *SecretDir) write(cert, key []byte) error {
	s.version++
	version := fmt.Sprintf("..v%d", s.version)
	if err := os.Mkdir(filepath.Join(s.dir, version), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, version, "tls.crt"), cert, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.dir, version, "tls.key"), key, 0o600); err != nil {
		return err
	}
	tmp := filepath.Join(s.dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.dir, "..data")); err != nil {
		return err
	}
	if s.version == 1 {
		for _, name := range []string{"tls.crt", "tls.key"} {
			if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.dir, name)); err != nil {
				return err
			}
		}
		return nil
	}
	// As the kubelet does, drop the previous version once nothing points
	// at it.
	return os.RemoveAll(filepath.Join(s.dir, fmt.Sprintf("..v%d", s.version-1)))
}
