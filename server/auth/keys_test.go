package auth

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoadOrCreateKeyPersists(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		path func(dir string) string
	}{
		{name: "in_data_dir", path: func(dir string) string { return filepath.Join(dir, defaultKeyFile) }},
		{name: "missing_parent_dirs", path: func(dir string) string { return filepath.Join(dir, "a", "b", "key.pem") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := tt.path(dir)

			first, created, err := loadOrCreateKey(path)
			require.NoError(t, err)
			require.True(t, created)

			fi, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

			second, created, err := loadOrCreateKey(path)
			require.NoError(t, err)
			require.False(t, created)
			require.True(t, first.Equal(second), "the stored key is reloaded, not replaced")

			entries, err := os.ReadDir(filepath.Dir(path))
			require.NoError(t, err)
			require.Len(t, entries, 1, "no temporary file is left behind")
		})
	}
}

func TestLoadOrCreateKeyErrors(t *testing.T) {
	t.Parallel()
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	require.NoError(t, err)

	tests := []struct {
		name    string
		content []byte
		wantErr string
	}{
		{name: "empty_file", content: []byte{}, wantErr: "not a PEM"},
		{name: "not_pem", content: []byte("hello"), wantErr: "not a PEM"},
		{name: "wrong_block_type", content: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}), wantErr: "not a PEM"},
		{name: "bad_der", content: pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: []byte{1, 2, 3}}), wantErr: "PKCS#8"},
		{name: "ecdsa_key", content: pem.EncodeToMemory(&pem.Block{Type: pemTypePrivateKey, Bytes: ecDER}), wantErr: "want Ed25519"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "key.pem")
			require.NoError(t, os.WriteFile(path, tt.content, 0o600))
			_, _, err := loadOrCreateKey(path)
			require.ErrorContains(t, err, tt.wantErr)

			got, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Equal(t, tt.content, got, "a bad key file is reported, never overwritten")
		})
	}
}

func TestNewUsesSigningKeyFile(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "secret", "jwt.key")
	cfg := fastConfig()
	cfg.SigningKeyFile = keyFile

	_, err := New(cfg, dataDir, newMemStore(), nil, nil)
	require.NoError(t, err)
	require.FileExists(t, keyFile)
	require.NoFileExists(t, filepath.Join(dataDir, defaultKeyFile))
}

func TestNewNeedsAKeyLocation(t *testing.T) {
	t.Parallel()
	_, err := New(fastConfig(), "", newMemStore(), nil, nil)
	require.ErrorContains(t, err, "data directory")
}

// fastConfig is FastConfig for white-box tests.
func fastConfig() Config { return FastConfig() }

func TestNewKeyFileProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		setup   func(t *testing.T, path string)
		wantErr string
		wantLog string
	}{
		{
			name:    "path_is_a_directory",
			setup:   func(t *testing.T, path string) { require.NoError(t, os.MkdirAll(path, 0o700)) },
			wantErr: "read signing key",
		},
		{
			name: "parent_is_a_file",
			setup: func(t *testing.T, path string) {
				require.NoError(t, os.WriteFile(filepath.Dir(path), nil, 0o600))
			},
			wantErr: "not a directory",
		},
		{
			name: "readable_by_others_warns",
			setup: func(t *testing.T, path string) {
				_, _, err := loadOrCreateKey(path)
				require.NoError(t, err)
				require.NoError(t, os.Chmod(path, 0o644))
			},
			wantLog: "readable by group or others",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "keys", "signing.key")
			tt.setup(t, path)
			cfg := fastConfig()
			cfg.SigningKeyFile = path
			var logs strings.Builder
			_, err := New(cfg, "", newMemStore(), slog.New(slog.NewTextHandler(&logs, nil)), nil)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Contains(t, logs.String(), tt.wantLog)
		})
	}
}

// Processes of a cluster that start at once on a shared key file all end
// up signing with the one key that won.
func TestConcurrentKeyCreationAgrees(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "signing.key")
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			keys[i], _, errs[i] = loadOrCreateKey(path)
		})
	}
	close(start)
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		require.True(t, keys[0].Equal(keys[i]), "process %d signs with another key", i)
	}
	onDisk, created, err := loadOrCreateKey(path)
	require.NoError(t, err)
	require.False(t, created)
	require.True(t, keys[0].Equal(onDisk))
	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary files left behind")
}
