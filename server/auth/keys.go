package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// defaultKeyFile is the signing key's name inside the data directory.
const defaultKeyFile = "signing.key"

// pemTypePrivateKey is the PEM block type of a PKCS#8 private key.
const pemTypePrivateKey = "PRIVATE KEY"

// loadOrCreateKey returns the Ed25519 key stored at path, creating it when
// the file does not exist. created reports which. The new file is written
// to a temporary file in the same directory and renamed into place, so a
// crash never leaves a truncated key behind.
func loadOrCreateKey(path string) (key ed25519.PrivateKey, created bool, err error) {
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		key, err := parseKey(data)
		if err != nil {
			return nil, false, fmt.Errorf("signing key %s: %w", path, err)
		}
		return key, false, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, false, fmt.Errorf("read signing key: %w", err)
	}

	_, key, err = ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, fmt.Errorf("encode signing key: %w", err)
	}
	data = pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: der})
	if err := writeFileAtomic(path, data); errors.Is(err, fs.ErrExist) {
		// Another process sharing the file (a cluster starting at once)
		// created it first: everyone must sign with that one.
		return loadOrCreateKey(path)
	} else if err != nil {
		return nil, false, fmt.Errorf("write signing key: %w", err)
	}
	return key, true, nil
}

// parseKey decodes a PEM PKCS#8 Ed25519 private key.
func parseKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != pemTypePrivateKey {
		return nil, fmt.Errorf("not a PEM %q block", pemTypePrivateKey)
	}
	parsed, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8: %w", err)
	}
	key, ok := parsed.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, want Ed25519", parsed)
	}
	return key, nil
}

// writeFileAtomic creates path holding data, mode 0600, via a temporary
// file and a hard link, so the name appears only with the complete
// contents. It fails with fs.ErrExist when path exists already: of
// processes creating it at once, exactly one wins. The directory is
// created (0700) if needed.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// CreateTemp opens with mode 0600, so the key is never readable by
	// others, not even between create and rename.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(data); err != nil {
		return err
	}
	// Chmod explicitly: CreateTemp's 0600 is an implementation detail.
	if err := f.Chmod(0o600); err != nil {
		return err
	}
	// Sync before linking so that after a crash the name points either to
	// nothing or to the complete key.
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Link, unlike rename, refuses to replace an existing file.
	if err := os.Link(f.Name(), path); err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	_ = os.Remove(f.Name())
	// Persist the link itself. Best effort: some platforms cannot sync a
	// directory, and the key is already complete on disk.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
