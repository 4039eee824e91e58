// Package config is parleyd's one typed configuration: defaults, then a
// YAML file, then PARLEY_* environment variables, then flags. It is made of
// each package's own Config, and only main imports it.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/parley-im/parley/server"
	"github.com/parley-im/parley/server/archive"
	"github.com/parley-im/parley/server/auth"
	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/shard"
	"github.com/parley-im/parley/server/tlsfiles"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/s3"
)

// EnvPrefix starts every environment variable parleyd reads.
const EnvPrefix = "PARLEY_"

// Config is parleyd's configuration. The zero value is not usable; start
// from Default.
type Config struct {
	// Listen is the address serving the API: HTTP/1.1 and h2c on one
	// port, or HTTPS when TLS is set. Cleartext belongs on loopback; set
	// TLS (or put TLS in front) elsewhere.
	Listen string `yaml:"listen" env:"LISTEN"`
	// TLS, with both files set, makes Listen serve HTTPS only: HTTP/2 and
	// HTTP/1.1 by ALPN, TLS 1.2 or later, no h2c. Replaced files (a
	// renewed Secret) are served from the next handshake on. AdminListen
	// stays cleartext. Neither file set: cleartext.
	TLS tlsfiles.Config `yaml:"tls" env:"TLS_"`
	// DataDir holds the embedded store and the token signing key.
	DataDir string `yaml:"data_dir" env:"DATA_DIR"`
	// AdminListen is the address of the operator endpoints: Prometheus
	// /metrics, /debug/pprof, /healthz (liveness) and /readyz
	// (readiness). Never the API's address: keep it on loopback or a
	// private network. Empty disables them. Several processes on one
	// machine need an address each.
	AdminListen string `yaml:"admin_listen" env:"ADMIN_LISTEN"`
	// WebDir holds the built web app (clients/web/dist), served at / next
	// to the API. A directory without index.html gets a page saying how
	// to build the app; empty serves no pages at all.
	WebDir string `yaml:"web_dir" env:"WEB_DIR"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `yaml:"log_level" env:"LOG_LEVEL"`
	// LogFormat is text (logfmt-like key=value lines) or json (one
	// object per line, for log collectors).
	LogFormat string `yaml:"log_format" env:"LOG_FORMAT"`
	// OTLPEndpoint is the OpenTelemetry collector that receives a trace
	// span per call, over OTLP/gRPC: host:port (cleartext) or an
	// http:// or https:// URL. Empty disables tracing.
	OTLPEndpoint string `yaml:"otlp_endpoint" env:"OTLP_ENDPOINT"`
	// ShutdownTimeout bounds a graceful shutdown.
	ShutdownTimeout time.Duration `yaml:"shutdown_timeout" env:"SHUTDOWN_TIMEOUT"`
	// Store selects the system of record: empty for the embedded SQLite
	// store under DataDir, or a postgres:// URL.
	Store string `yaml:"store" env:"STORE"`
	// Redis is the redis:// URL of the Redis that routes messages between
	// server processes and records presence. Empty means a single process
	// that routes in memory. Several processes (replicas of a shard, or
	// several shards) need it, and a shared postgres Store.
	Redis string `yaml:"redis" env:"REDIS"`
	// Node names this process in the cluster: unique, and stable across
	// restarts (a StatefulSet pod name), since it names the process's
	// consumer group on the shard's stream. Empty means the host name and
	// the listen port.
	Node string `yaml:"node" env:"NODE"`
	// PresenceTTL is how long a device stays online in Redis without a
	// refresh (refreshed every third of it): how long the devices of a
	// process that died keep looking online.
	PresenceTTL time.Duration `yaml:"presence_ttl" env:"PRESENCE_TTL"`
	// Cluster is this process's shard and the shards' client addresses.
	Cluster shard.Layout `yaml:"cluster" env:",inline"`
	// Chat holds the messaging rules.
	Chat server.Config `yaml:"chat" env:"CHAT_"`
	// Engine tunes batching, acks and catch-up.
	Engine engine.Config `yaml:"engine" env:"ENGINE_"`
	// Hub sizes per-connection buffers.
	Hub hub.Config `yaml:"hub" env:"HUB_"`
	// Auth configures accounts and tokens.
	Auth auth.Config `yaml:"auth" env:"AUTH_"`
	// Media bounds uploads and says where their bytes live.
	Media MediaConfig `yaml:"media" env:"MEDIA_"`
	// Admin says who may call the AdminService.
	Admin AdminConfig `yaml:"admin" env:"ADMIN_"`
	// Analytics says where the analytics events go and where the
	// AdminService reads them.
	Analytics AnalyticsConfig `yaml:"analytics" env:"ANALYTICS_"`
	// Archive copies every committed message into a ClickHouse archive.
	Archive ArchiveConfig `yaml:"archive" env:"ARCHIVE_"`
}

// ArchiveConfig is the message archiver's tuning plus its ClickHouse.
type ArchiveConfig struct {
	// Enabled runs the archiver in this process (one process of a cluster
	// archives at a time, under a lease in the store; the others stand
	// by). Off by default: the store then keeps no outbox. Once enabled,
	// the store enqueues every change for the archive even while no
	// archiver runs, so the archive catches up when one does.
	Enabled        bool `yaml:"enabled" env:"ENABLED"`
	archive.Config `yaml:",inline" env:",inline"`
	// ClickHouse is the archive's server; Addrs is required when Enabled.
	ClickHouse clickhouse.Config `yaml:"clickhouse" env:"CLICKHOUSE_"`
}

// AdminConfig names the AdminService's admins.
type AdminConfig struct {
	// Users are the usernames of admins besides the first registered
	// user, who always is one. Comma-separated in the environment
	// (PARLEY_ADMIN_USERS=alice,bob); case-insensitive, as usernames are.
	Users []string `yaml:"users" env:"USERS"`
}

// AnalyticsConfig is where analytics events are written and read.
type AnalyticsConfig struct {
	// Enabled records events (messages sent, delivered, read; streams
	// opened and closed; never content). Default true. Off, the
	// AdminService still answers from what was recorded before.
	Enabled bool `yaml:"enabled" env:"ENABLED"`
	// ClickHouse, with Addrs set, stores the events in ClickHouse and
	// answers the AdminService from there. Unset, the embedded store
	// keeps them; a postgres store without ClickHouse has no analytics
	// (the AdminService answers FailedPrecondition).
	ClickHouse clickhouse.Config `yaml:"clickhouse" env:"CLICKHOUSE_"`
	// Writer batches the events (into ClickHouse or the embedded store).
	Writer clickhouse.EventWriterConfig `yaml:"writer" env:"WRITER_"`
	// Retention is how long events are kept: older ones are removed every
	// hour (in ClickHouse a month at a time, once the whole month is
	// older). 0 keeps them all. It never touches the message archive.
	// The open-connections series (opens minus closes since the oldest
	// event kept) drops by the connections open across the cutoff.
	Retention time.Duration `yaml:"retention" env:"RETENTION"`
}

// Media storage backends (MediaConfig.Backend).
const (
	MediaAuto = ""   // fs on a single process, none in a cluster
	MediaFS   = "fs" // a directory: Dir, or <data_dir>/media
	MediaS3   = "s3" // S3-compatible object storage, shared by a cluster
	MediaNone = "none"
)

// MediaConfig is MediaService's limits plus its storage.
type MediaConfig struct {
	server.MediaConfig `yaml:",inline" env:",inline"`
	// Backend is where uploads are stored: fs, s3, or none (image and
	// file messages are refused). Empty picks fs for a single process and
	// none for processes routed through redis, which must share their
	// media: set s3 there.
	Backend string `yaml:"backend" env:"BACKEND"`
	// Dir is the fs backend's directory; empty means <data_dir>/media.
	Dir string `yaml:"dir" env:"DIR"`
	// S3 configures the s3 backend.
	S3 s3.Config `yaml:"s3" env:"S3_"`
}

// MediaBackend resolves Backend's automatic choice.
func (c Config) MediaBackend() string {
	if c.Media.Backend != MediaAuto {
		return c.Media.Backend
	}
	if c.Redis != "" {
		return MediaNone
	}
	return MediaFS
}

// Default is the embedded single-node setup: 127.0.0.1:8080, ./data.
func Default() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		DataDir:         "data",
		AdminListen:     "127.0.0.1:9090",
		WebDir:          "clients/web/dist",
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: 15 * time.Second,
		Chat:            server.DefaultConfig(),
		Engine:          engine.DefaultConfig(),
		Hub:             hub.DefaultConfig(),
		Auth:            auth.DefaultConfig(),
		PresenceTTL:     30 * time.Second,
		Cluster:         shard.Single(),
		Media:           MediaConfig{MediaConfig: server.DefaultMediaConfig()},
		Analytics:       AnalyticsConfig{Enabled: true},
		Archive:         ArchiveConfig{Config: archive.DefaultConfig()},
	}
}

// Validate reports every invalid setting.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen must not be empty"))
	}
	if err := c.TLS.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("tls: %w", err))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir must not be empty"))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q: want debug, info, warn or error", c.LogLevel))
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log_format %q: want text or json", c.LogFormat))
	}
	if err := c.Chat.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("chat: %w", err))
	}
	if c.Engine.BatchSize < 1 || c.Engine.CatchupLimit < 1 || c.Engine.AckFlushInterval <= 0 {
		errs = append(errs, errors.New("engine: batch_size and catchup_limit must be at least 1, ack_flush_interval positive"))
	}
	if c.Hub.QueueLen < 1 || c.Hub.MaxPending < 1 {
		errs = append(errs, errors.New("hub: queue_len and max_pending must be at least 1"))
	}
	if err := c.Auth.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("auth: %w", err))
	}
	errs = append(errs, c.validateMedia()...)
	if c.Analytics.Retention < 0 {
		errs = append(errs, fmt.Errorf("analytics: retention %s must not be negative (0 keeps every event)", c.Analytics.Retention))
	}
	if c.Archive.Enabled {
		if len(c.Archive.ClickHouse.Addrs) == 0 {
			errs = append(errs, errors.New("archive: enabled needs clickhouse.addrs (PARLEY_ARCHIVE_CLICKHOUSE_ADDRS)"))
		}
		if err := c.Archive.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("archive: %w", err))
		}
		if w := c.Archive.HotWindow; w > 0 && w <= c.Chat.RecallWindow {
			// A message that left the store can no longer be recalled.
			errs = append(errs, fmt.Errorf("archive: hot_window %s must exceed chat.recall_window %s", w, c.Chat.RecallWindow))
		}
	}
	if err := c.Cluster.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	} else if c.Cluster.Shards > 1 && c.Redis == "" {
		errs = append(errs, errors.New("redis: more than one shard needs a redis:// URL to route messages between processes"))
	}
	if c.Store != "" && !strings.HasPrefix(c.Store, "postgres://") && !strings.HasPrefix(c.Store, "postgresql://") {
		errs = append(errs, errors.New("store: want empty (embedded) or a postgres:// URL"))
	}
	if c.Redis != "" {
		if !strings.HasPrefix(c.Redis, "redis://") && !strings.HasPrefix(c.Redis, "rediss://") {
			errs = append(errs, errors.New("redis: want a redis:// or rediss:// URL"))
		}
		if c.Store == "" {
			errs = append(errs, errors.New("store: processes routed through redis must share a postgres:// store; the embedded store belongs to one process"))
		}
		if c.Auth.SigningKeyFile == "" {
			// A key generated per data directory would make every process
			// reject the others' tokens.
			errs = append(errs, errors.New("auth: processes routed through redis must share one access-token key: set auth.signing_key_file (PARLEY_AUTH_SIGNING_KEY_FILE)"))
		}
		if c.PresenceTTL < 3*time.Millisecond {
			errs = append(errs, errors.New("presence_ttl must be at least 3ms"))
		}
	}
	return errors.Join(errs...)
}

// Load builds the configuration from args (without the program name) and
// the environment, read through getenv. Flag -config (or PARLEY_CONFIG)
// names a YAML file. Precedence: defaults < file < environment < flags.
// Usage and errors are written to out.
func Load(args []string, getenv func(string) string, out io.Writer) (Config, error) {
	cfg := Default()
	path := getenv(EnvPrefix + "CONFIG")
	if p, ok := scanConfigFlag(args); ok {
		path = p
	}
	if path != "" {
		if err := readFile(path, &cfg); err != nil {
			return Config{}, err
		}
	}
	if err := applyEnv(reflect.ValueOf(&cfg).Elem(), EnvPrefix, getenv); err != nil {
		return Config{}, err
	}
	fs := flag.NewFlagSet("parleyd", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.String("config", path, "YAML config `file` (env PARLEY_CONFIG)")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "listen `address` (env PARLEY_LISTEN)")
	fs.StringVar(&cfg.TLS.CertFile, "tls-cert-file", cfg.TLS.CertFile, "PEM certificate chain `file` (tls.crt); with -tls-key-file, listen serves HTTPS (env PARLEY_TLS_CERT_FILE)")
	fs.StringVar(&cfg.TLS.KeyFile, "tls-key-file", cfg.TLS.KeyFile, "PEM private key `file` (tls.key) of -tls-cert-file (env PARLEY_TLS_KEY_FILE)")
	fs.StringVar(&cfg.DataDir, "data-dir", cfg.DataDir, "data `directory` (env PARLEY_DATA_DIR)")
	fs.StringVar(&cfg.LogLevel, "log-level", cfg.LogLevel, "debug, info, warn or error (env PARLEY_LOG_LEVEL)")
	fs.StringVar(&cfg.LogFormat, "log-format", cfg.LogFormat, "text or json (env PARLEY_LOG_FORMAT)")
	fs.StringVar(&cfg.AdminListen, "admin-listen", cfg.AdminListen, "`address` of /metrics, /debug/pprof, /healthz and /readyz; empty disables them (env PARLEY_ADMIN_LISTEN)")
	fs.StringVar(&cfg.WebDir, "web-dir", cfg.WebDir, "`directory` of the built web app served at /; empty serves no pages (env PARLEY_WEB_DIR)")
	fs.StringVar(&cfg.OTLPEndpoint, "otlp-endpoint", cfg.OTLPEndpoint, "OpenTelemetry collector (OTLP/gRPC) `host:port` or URL receiving trace spans; empty disables tracing (env PARLEY_OTLP_ENDPOINT)")
	fs.DurationVar(&cfg.Chat.RecallWindow, "recall-window", cfg.Chat.RecallWindow, "how long senders may recall a message")
	fs.IntVar(&cfg.Chat.MaxGroupSize, "max-group-size", cfg.Chat.MaxGroupSize, "most members of a group")
	fs.DurationVar(&cfg.Chat.HeartbeatInterval, "heartbeat-interval", cfg.Chat.HeartbeatInterval, "client ping interval")
	fs.DurationVar(&cfg.Chat.HeartbeatTimeout, "heartbeat-timeout", cfg.Chat.HeartbeatTimeout, "close streams silent this long")
	fs.IntVar(&cfg.Hub.QueueLen, "outbound-queue", cfg.Hub.QueueLen, "frames queued per connection before it is dropped as slow")
	fs.IntVar(&cfg.Engine.BatchSize, "batch-size", cfg.Engine.BatchSize, "most messages per commit")
	fs.IntVar(&cfg.Engine.CatchupLimit, "catchup-limit", cfg.Engine.CatchupLimit, "most messages per conversation sent on reconnect before a gap")
	fs.DurationVar(&cfg.Auth.AccessTTL, "access-ttl", cfg.Auth.AccessTTL, "access token lifetime")
	fs.StringVar(&cfg.Store, "store", cfg.Store, "system of record: empty for embedded SQLite, or a postgres:// URL (env PARLEY_STORE)")
	fs.IntVar(&cfg.Cluster.Shard, "shard", cfg.Cluster.Shard, "this process's shard (env PARLEY_SHARD)")
	fs.IntVar(&cfg.Cluster.Shards, "shards", cfg.Cluster.Shards, "number of shards (env PARLEY_SHARDS)")
	fs.StringVar(&cfg.Redis, "redis", cfg.Redis, "redis:// URL routing messages between processes; empty for one process (env PARLEY_REDIS)")
	fs.StringVar(&cfg.Node, "node", cfg.Node, "this process's unique, stable name in the cluster; default host-port (env PARLEY_NODE)")
	fs.Func("shard-addresses", "comma-separated client `URLs` of the shards, in shard order, for Locate (env PARLEY_SHARD_ADDRESSES)", func(v string) error {
		cfg.Cluster.Addresses = strings.Split(v, ",")
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	if fs.NArg() > 0 {
		return Config{}, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

func scanConfigFlag(args []string) (string, bool) {
	for i, a := range args {
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "config" {
			continue
		}
		if hasValue {
			return value, true
		}
		if i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func readFile(path string, cfg *Config) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("config: %s: %w", path, err)
	}
	return nil
}

// applyEnv sets every field whose env tag (after prefix) is set in the
// environment. Struct fields' tags extend the prefix.
func applyEnv(v reflect.Value, prefix string, getenv func(string) string) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("env")
		if tag == "" {
			continue
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct {
			// ",inline" keeps the prefix: PARLEY_SHARD, not PARLEY_CLUSTER_SHARD.
			if tag == ",inline" {
				tag = ""
			}
			if err := applyEnv(fv, prefix+tag, getenv); err != nil {
				return err
			}
			continue
		}
		name := prefix + tag
		raw := getenv(name)
		if raw == "" {
			continue
		}
		if err := setValue(fv, raw); err != nil {
			return fmt.Errorf("config: %s=%q: %w", name, raw, err)
		}
	}
	return nil
}

func setValue(v reflect.Value, raw string) error {
	if v.Type() == reflect.TypeFor[time.Duration]() {
		d, err := time.ParseDuration(raw)
		if err != nil {
			return err
		}
		v.SetInt(int64(d))
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(raw)
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return err
		}
		v.SetInt(n)
	case reflect.Uint, reflect.Uint64, reflect.Uint32, reflect.Uint16, reflect.Uint8:
		n, err := strconv.ParseUint(raw, 10, v.Type().Bits())
		if err != nil {
			return err
		}
		v.SetUint(n)
	case reflect.Slice:
		if v.Type().Elem().Kind() != reflect.String {
			return fmt.Errorf("unsupported type %s", v.Type())
		}
		v.Set(reflect.ValueOf(strings.Split(raw, ",")))
	case reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return err
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

func (c Config) validateMedia() []error {
	var errs []error
	if err := c.Media.Validate(); err != nil {
		errs = append(errs, err)
	}
	switch c.MediaBackend() {
	case MediaFS:
		if c.Redis != "" {
			errs = append(errs, errors.New("media.backend: processes routed through redis must share their media: use s3 (or none)"))
		}
	case MediaS3:
		if c.Media.S3.Endpoint == "" || c.Media.S3.Bucket == "" {
			errs = append(errs, errors.New("media.s3: endpoint and bucket are required for the s3 backend"))
		}
	case MediaNone:
	default:
		errs = append(errs, fmt.Errorf("media.backend %q: want fs, s3 or none", c.Media.Backend))
	}
	return errs
}
