// Package tlsfiles serves a TLS key pair from PEM files that may be
// replaced while the process runs, as a mounted Kubernetes Secret is when
// cert-manager renews it: its [Reloader] is a tls.Config.GetCertificate
// that picks up new files at the next handshake, without a restart, and
// keeps the last good pair when new files do not load.
package tlsfiles

import "errors"

// Config names the key pair's files. The zero value configures no TLS.
type Config struct {
	// CertFile is the PEM certificate chain, leaf first (tls.crt of a
	// kubernetes.io/tls Secret). Set with KeyFile, or neither.
	CertFile string `yaml:"cert_file" env:"CERT_FILE"`
	// KeyFile is the PEM private key of CertFile's leaf (tls.key).
	KeyFile string `yaml:"key_file" env:"KEY_FILE"`
}

// Enabled reports whether both files are set.
func (c Config) Enabled() bool { return c.CertFile != "" && c.KeyFile != "" }

// Validate reports a pair that is half set: both files or neither.
func (c Config) Validate() error {
	switch {
	case c.CertFile != "" && c.KeyFile == "":
		return errors.New("key_file is not set but cert_file is: set both to serve TLS, or neither")
	case c.CertFile == "" && c.KeyFile != "":
		return errors.New("cert_file is not set but key_file is: set both to serve TLS, or neither")
	}
	return nil
}
