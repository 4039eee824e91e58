package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/clients/go/parley"
)

func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		args      []string
		wantPos   []string
		wantLimit uint
		wantErr   bool
	}{
		{name: "flag_first", args: []string{"-limit", "5", "conv"}, wantPos: []string{"conv"}, wantLimit: 5},
		{name: "flag_last", args: []string{"conv", "-limit", "7"}, wantPos: []string{"conv"}, wantLimit: 7},
		{name: "no_flag", args: []string{"conv"}, wantPos: []string{"conv"}, wantLimit: 20},
		{name: "double_dash", args: []string{"conv", "--", "-limit"}, wantPos: []string{"conv", "-limit"}, wantLimit: 20},
		{name: "unknown_flag", args: []string{"conv", "-nope"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFlagSet("history", env{stderr: &bytes.Buffer{}})
			limit := fs.Uint("limit", 20, "")
			pos, err := parseInterspersed(fs, tt.args)
			if tt.wantErr {
				require.ErrorIs(t, err, errUsage)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantPos, pos)
			require.Equal(t, tt.wantLimit, *limit)
		})
	}
}

func TestStore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "nested", "session.json")
	s := &store{path: path}
	_, ok, err := s.get("http://a")
	require.NoError(t, err)
	require.False(t, ok)

	creds := parley.Credentials{UserID: "u", Username: "alice", DeviceID: "d", AccessToken: "at", RefreshToken: "rt",
		AccessExpiresAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}
	require.NoError(t, s.put("http://a", creds))
	require.NoError(t, s.put("http://b", parley.Credentials{UserID: "other"}))
	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	got, ok, err := s.get("http://a")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, creds, got)

	require.NoError(t, s.remove("http://a"))
	_, ok, err = s.get("http://a")
	require.NoError(t, err)
	require.False(t, ok)
	_, ok, err = s.get("http://b")
	require.NoError(t, err)
	require.True(t, ok, "other servers' sessions are kept")
}

func TestRunUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want int
	}{
		{name: "no_command", args: nil, want: 2},
		{name: "unknown_command", args: []string{"frobnicate"}, want: 2},
		{name: "help", args: []string{"help"}, want: 0},
		{name: "register_without_password", args: []string{"register", "alice"}, want: 2},
		{name: "dm_without_user", args: []string{"dm"}, want: 2},
		{name: "history_bad_limit", args: []string{"history", "c", "-limit", "500"}, want: 2},
		{name: "search_no_words", args: []string{"search"}, want: 2},
		{name: "search_bad_limit", args: []string{"search", "-limit", "101", "cat"}, want: 2},
		{name: "not_signed_in", args: []string{"conversations"}, want: 1},
		{name: "unreachable_server", args: []string{"-server", "http://127.0.0.1:1", "login", "alice"}, env: map[string]string{"PARLEY_PASSWORD": "x"}, want: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			code := run(ctx, tt.args, env{
				stdout:  &stdout,
				stderr:  &stderr,
				getenv:  func(k string) string { return tt.env[k] },
				homeDir: func() (string, error) { return dir, nil },
			})
			require.Equal(t, tt.want, code, "stderr: %s", stderr.String())
		})
	}
}
