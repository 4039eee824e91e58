package config

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "parley.yaml")
	require.NoError(t, os.WriteFile(file, []byte("listen: 127.0.0.1:9000\ndata_dir: /from/file\nchat:\n  recall_window: 5m\n  max_group_size: 50\nauth:\n  access_ttl: 10m\n"), 0o600))
	tlsFile := filepath.Join(dir, "tls.yaml")
	require.NoError(t, os.WriteFile(tlsFile, []byte("tls:\n  cert_file: /file/tls.crt\n  key_file: /file/tls.key\n"), 0o600))
	bad := filepath.Join(dir, "bad.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("listen: x\nno_such_field: 1\n"), 0o600))

	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c Config)
		wantErr string
	}{
		{name: "defaults", check: func(t *testing.T, c Config) {
			require.Equal(t, Default(), c)
			require.Equal(t, "127.0.0.1:8080", c.Listen)
			require.Equal(t, 2*time.Minute, c.Chat.RecallWindow)
			require.Equal(t, 1000, c.Chat.MaxGroupSize)
		}},
		{name: "file_over_defaults", args: []string{"-config", file}, check: func(t *testing.T, c Config) {
			require.Equal(t, "127.0.0.1:9000", c.Listen)
			require.Equal(t, 5*time.Minute, c.Chat.RecallWindow)
			require.Equal(t, 10*time.Minute, c.Auth.AccessTTL)
			require.Equal(t, 90*time.Second, c.Chat.HeartbeatTimeout, "unset fields keep their defaults")
		}},
		{name: "env_over_file", args: []string{"-config=" + file}, env: map[string]string{"PARLEY_DATA_DIR": "/from/env", "PARLEY_CHAT_MAX_GROUP_SIZE": "20", "PARLEY_AUTH_ACCESS_TTL": "1m"}, check: func(t *testing.T, c Config) {
			require.Equal(t, "/from/env", c.DataDir)
			require.Equal(t, 20, c.Chat.MaxGroupSize)
			require.Equal(t, time.Minute, c.Auth.AccessTTL)
			require.Equal(t, "127.0.0.1:9000", c.Listen)
		}},
		{name: "flags_over_env", args: []string{"-data-dir", "/from/flag", "-recall-window", "30s"}, env: map[string]string{"PARLEY_CONFIG": file, "PARLEY_DATA_DIR": "/from/env"}, check: func(t *testing.T, c Config) {
			require.Equal(t, "/from/flag", c.DataDir)
			require.Equal(t, 30*time.Second, c.Chat.RecallWindow)
			require.Equal(t, "127.0.0.1:9000", c.Listen, "PARLEY_CONFIG names the file")
		}},
		{name: "unknown_file_field", args: []string{"-config", bad}, wantErr: "no_such_field"},
		{name: "missing_file", args: []string{"-config", filepath.Join(dir, "nope.yaml")}, wantErr: "no such file"},
		{name: "bad_env_value", env: map[string]string{"PARLEY_CHAT_RECALL_WINDOW": "soon"}, wantErr: "PARLEY_CHAT_RECALL_WINDOW"},
		{name: "invalid_value", args: []string{"-heartbeat-timeout", "1s", "-heartbeat-interval", "2s"}, wantErr: "heartbeat_timeout"},
		{name: "stray_argument", args: []string{"extra"}, wantErr: "unexpected arguments"},
		{name: "bad_log_level", args: []string{"-log-level", "loud"}, wantErr: "log_level"},
		{name: "bad_log_format", args: []string{"-log-format", "xml"}, wantErr: "log_format"},
		{name: "archive_off_by_default", check: func(t *testing.T, c Config) {
			require.False(t, c.Archive.Enabled)
			require.Equal(t, 5000, c.Archive.BatchSize)
		}},
		{name: "archive_env", env: map[string]string{"PARLEY_ARCHIVE_ENABLED": "true", "PARLEY_ARCHIVE_BATCH_SIZE": "100", "PARLEY_ARCHIVE_LEASE_TTL": "30s",
			"PARLEY_ARCHIVE_CLICKHOUSE_ADDRS": "ch1:9000,ch2:9000", "PARLEY_ARCHIVE_CLICKHOUSE_DATABASE": "archive"}, check: func(t *testing.T, c Config) {
			require.True(t, c.Archive.Enabled)
			require.Equal(t, 100, c.Archive.BatchSize)
			require.Equal(t, 30*time.Second, c.Archive.LeaseTTL)
			require.Equal(t, []string{"ch1:9000", "ch2:9000"}, c.Archive.ClickHouse.Addrs)
			require.Equal(t, "archive", c.Archive.ClickHouse.Database)
		}},
		{name: "archive_needs_clickhouse", env: map[string]string{"PARLEY_ARCHIVE_ENABLED": "true"}, wantErr: "clickhouse.addrs"},
		{name: "archive_window_default", env: map[string]string{"PARLEY_ARCHIVE_ENABLED": "true", "PARLEY_ARCHIVE_CLICKHOUSE_ADDRS": "ch:9000"}, check: func(t *testing.T, c Config) {
			require.Equal(t, 30*24*time.Hour, c.Archive.HotWindow)
		}},
		{name: "archive_window_off", env: map[string]string{"PARLEY_ARCHIVE_ENABLED": "true", "PARLEY_ARCHIVE_CLICKHOUSE_ADDRS": "ch:9000", "PARLEY_ARCHIVE_HOT_WINDOW": "0s"}, check: func(t *testing.T, c Config) {
			require.Zero(t, c.Archive.HotWindow)
		}},
		{name: "archive_window_below_recall", env: map[string]string{"PARLEY_ARCHIVE_ENABLED": "true", "PARLEY_ARCHIVE_CLICKHOUSE_ADDRS": "ch:9000", "PARLEY_ARCHIVE_HOT_WINDOW": "1m"}, wantErr: "hot_window 1m0s must exceed chat.recall_window"},
		{name: "archive_window_negative", env: map[string]string{"PARLEY_ARCHIVE_ENABLED": "true", "PARLEY_ARCHIVE_CLICKHOUSE_ADDRS": "ch:9000", "PARLEY_ARCHIVE_HOT_WINDOW": "-1h"}, wantErr: "hot_window -1h0m0s: must not be negative"},
		{name: "analytics_retention", env: map[string]string{"PARLEY_ANALYTICS_RETENTION": "9000h"}, check: func(t *testing.T, c Config) {
			require.Equal(t, 9000*time.Hour, c.Analytics.Retention)
		}},
		{name: "analytics_retention_negative", env: map[string]string{"PARLEY_ANALYTICS_RETENTION": "-1h"}, wantErr: "analytics: retention -1h0m0s must not be negative"},
		{name: "archive_bad_batch", env: map[string]string{"PARLEY_ARCHIVE_ENABLED": "true", "PARLEY_ARCHIVE_CLICKHOUSE_ADDRS": "ch:9000", "PARLEY_ARCHIVE_BATCH_SIZE": "0"}, wantErr: "batch_size"},
		{name: "observability_defaults", check: func(t *testing.T, c Config) {
			require.Equal(t, "127.0.0.1:9090", c.AdminListen)
			require.Equal(t, "text", c.LogFormat)
			require.Empty(t, c.OTLPEndpoint, "tracing is off by default")
		}},
		{name: "observability_flags", args: []string{"-admin-listen", "0.0.0.0:9100", "-log-format", "json", "-otlp-endpoint", "collector:4317"}, check: func(t *testing.T, c Config) {
			require.Equal(t, "0.0.0.0:9100", c.AdminListen)
			require.Equal(t, "json", c.LogFormat)
			require.Equal(t, "collector:4317", c.OTLPEndpoint)
		}},
		{name: "observability_env", env: map[string]string{"PARLEY_ADMIN_LISTEN": "127.0.0.1:9191", "PARLEY_LOG_FORMAT": "json", "PARLEY_OTLP_ENDPOINT": "https://otel.example:4317"}, check: func(t *testing.T, c Config) {
			require.Equal(t, "127.0.0.1:9191", c.AdminListen)
			require.Equal(t, "json", c.LogFormat)
			require.Equal(t, "https://otel.example:4317", c.OTLPEndpoint)
		}},
		{name: "admin_listen_disabled_by_flag", args: []string{"-admin-listen", ""}, env: map[string]string{"PARLEY_ADMIN_LISTEN": "127.0.0.1:9191"}, check: func(t *testing.T, c Config) {
			require.Empty(t, c.AdminListen)
		}},
		{name: "shard_from_env", env: map[string]string{"PARLEY_SHARD": "0", "PARLEY_SHARDS": "1", "PARLEY_SHARD_ADDRESSES": "http://a:8080"}, check: func(t *testing.T, c Config) {
			require.Equal(t, 1, c.Cluster.Shards)
			require.Equal(t, []string{"http://a:8080"}, c.Cluster.Addresses)
		}},
		{name: "shard_out_of_range", args: []string{"-shard", "3"}, wantErr: "outside"},
		{name: "several_shards_need_redis", args: []string{"-shards", "2"}, wantErr: "needs a redis:// URL"},
		{name: "redis_needs_a_shared_store", args: []string{"-redis", "redis://127.0.0.1:6379"}, wantErr: "must share a postgres:// store"},
		{name: "redis_url_scheme", args: []string{"-store", "postgres://x", "-redis", "127.0.0.1:6379"}, wantErr: "redis:// or rediss://"},
		{name: "redis_needs_a_shared_signing_key", args: []string{"-store", "postgres://x", "-redis", "redis://r:6379/0"}, wantErr: "signing_key_file"},
		{name: "cluster_flags", env: map[string]string{"PARLEY_AUTH_SIGNING_KEY_FILE": "/k"}, args: []string{"-store", "postgres://x", "-redis", "redis://r:6379/0", "-shard", "1", "-shards", "2", "-node", "s1a", "-shard-addresses", "http://a:1,http://b:2"}, check: func(t *testing.T, c Config) {
			require.Equal(t, "redis://r:6379/0", c.Redis)
			require.Equal(t, "s1a", c.Node)
			require.Equal(t, 1, c.Cluster.Shard)
			require.Equal(t, []string{"http://a:1", "http://b:2"}, c.Cluster.Addresses)
		}},
		{name: "store_must_be_postgres_url", args: []string{"-store", "mysql://x"}, wantErr: "postgres://"},
		{name: "tls_off_by_default", check: func(t *testing.T, c Config) {
			require.False(t, c.TLS.Enabled())
		}},
		{name: "tls_from_env", env: map[string]string{"PARLEY_TLS_CERT_FILE": "/tls/tls.crt", "PARLEY_TLS_KEY_FILE": "/tls/tls.key"}, check: func(t *testing.T, c Config) {
			require.Equal(t, "/tls/tls.crt", c.TLS.CertFile)
			require.Equal(t, "/tls/tls.key", c.TLS.KeyFile)
			require.True(t, c.TLS.Enabled())
		}},
		{name: "tls_flags_over_env", args: []string{"-tls-cert-file", "/flag.crt", "-tls-key-file", "/flag.key"}, env: map[string]string{"PARLEY_TLS_CERT_FILE": "/env.crt", "PARLEY_TLS_KEY_FILE": "/env.key"}, check: func(t *testing.T, c Config) {
			require.Equal(t, "/flag.crt", c.TLS.CertFile)
			require.Equal(t, "/flag.key", c.TLS.KeyFile)
		}},
		{name: "tls_from_file", args: []string{"-config", tlsFile}, check: func(t *testing.T, c Config) {
			require.Equal(t, "/file/tls.crt", c.TLS.CertFile)
			require.Equal(t, "/file/tls.key", c.TLS.KeyFile)
		}},
		{name: "tls_cert_without_key", env: map[string]string{"PARLEY_TLS_CERT_FILE": "/tls/tls.crt"}, wantErr: "tls: key_file is not set"},
		{name: "tls_key_without_cert", args: []string{"-tls-key-file", "/tls/tls.key"}, wantErr: "tls: cert_file is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

// The example in config/ must load and must say what the defaults are.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"-config", filepath.Join("..", "..", "config", "parleyd.example.yaml")}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, Default(), c)
}

// The cluster example in config/ loads, with each process's own flags.
func TestClusterExampleLoads(t *testing.T) {
	t.Parallel()
	c, err := Load([]string{"-config", filepath.Join("..", "..", "config", "cluster.example.yaml"), "-shard", "1", "-node", "s1a"}, func(string) string { return "" }, io.Discard)
	require.NoError(t, err)
	require.Equal(t, 2, c.Cluster.Shards)
	require.Equal(t, 1, c.Cluster.Shard)
	require.Equal(t, "s1a", c.Node)
	require.Equal(t, "http://127.0.0.1:8083", c.Cluster.Address(1))
	require.NotEmpty(t, c.Redis)
	require.NotEmpty(t, c.Auth.SigningKeyFile)
}
