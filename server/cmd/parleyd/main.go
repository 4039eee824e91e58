// Command parleyd is the Parley server. With no configuration it runs the
// embedded single-node setup: SQLite under ./data, listening on
// 127.0.0.1:8080 for Connect, gRPC and gRPC-Web (HTTP/1.1 and h2c; HTTPS
// instead with -tls-cert-file and -tls-key-file).
// -store postgres://… keeps everything in PostgreSQL instead, and with
// -redis redis://… several processes (-shard N -shards M, -node NAME) share
// it, routing live traffic and presence through Redis.
// `parleyd migrate [flags]` applies the store's migrations and exits.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"

	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/server"
	"github.com/parley-im/parley/server/admin"
	"github.com/parley-im/parley/server/archive"
	"github.com/parley-im/parley/server/auth"
	"github.com/parley-im/parley/server/config"
	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/server/health"
	"github.com/parley-im/parley/server/history"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/internal/tracing"
	"github.com/parley-im/parley/server/media"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/server/route"
	"github.com/parley-im/parley/server/tlsfiles"
	"github.com/parley-im/parley/server/web"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/blobfs"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/postgres"
	"github.com/parley-im/parley/storage/redis"
	"github.com/parley-im/parley/storage/s3"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "migrate":
		err = migrate(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
	case len(os.Args) > 1 && os.Args[1] == "archive-off":
		err = archiveOff(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
	default:
		err = run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	}
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "parleyd:", err)
		}
		os.Exit(1)
	}
}

// run starts the server and blocks until ctx ends, then shuts down
// gracefully: readiness and health turn NOT_SERVING, streams are told to
// reconnect, in-flight calls finish, acks are flushed, the store is
// closed, buffered trace spans are exported.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	// Before anything slow: a bad key pair fails the start at once.
	tlsCfg, err := apiTLS(cfg.TLS, logger)
	if err != nil {
		return err
	}
	node := cfg.Node
	if node == "" {
		node = defaultNode(cfg.Listen)
	}

	reg := metrics.NewRegistry()
	m, err := metrics.New(reg)
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	// The admin endpoints come up first, so liveness holds while the
	// store migrates; readiness waits until the API serves.
	var ready readiness
	if err := metrics.WatchReady(reg, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return ready.ready(ctx)
	}); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	adminSrv, err := serveAdmin(cfg.AdminListen, reg, &ready, logger, stdout)
	if err != nil {
		return err
	}
	defer adminSrv.close()

	tr, err := tracing.New(ctx, tracing.Config{Endpoint: cfg.OTLPEndpoint, Service: "parleyd", Instance: node, Version: buildVersion()})
	if err != nil {
		return err
	}
	if tr.Enabled() {
		// Failed exports are reported through OTel's global handler,
		// which would otherwise print through the log package.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { logger.Warn("tracing: export", "err", err) }))
		logger.Info("tracing to an OTLP collector", "endpoint", cfg.OTLPEndpoint)
	}
	defer func() {
		// Runs last: the shutdown's own calls are traced too.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(ctx); err != nil {
			logger.Warn("tracing shutdown", "err", err)
		}
	}()

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	rawStore, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer rawStore.Close()
	store := metrics.InstrumentStore(rawStore, m.Store)

	h := hub.New(cfg.Hub)
	h.SetMetrics(m.Hub)
	// Before the hub delivers anything; stopped after the engine.
	an, err := openAnalytics(ctx, cfg, rawStore, node, reg, logger)
	if err != nil {
		return err
	}
	defer an.stop()
	if an.writer != nil {
		h.SetEvents(an.writer)
	}
	cl, err := openCluster(ctx, cfg, node, h, m.Route, logger)
	if err != nil {
		return err
	}
	defer cl.close()
	stopArchive, archived, err := startArchive(ctx, cfg, rawStore, node, logger, m.Archive)
	if err != nil {
		return err
	}
	defer stopArchive()
	var archiveSearch server.ArchiveSearch
	if archived != nil {
		// History and search reach below the store's window. The engine's
		// catch-up reads through it too: a device back after longer than
		// the window gets the archived part of its backlog.
		reader := history.New(hotSide{Store: store, HotWindow: rawStore.(storage.HotWindow)}, archived)
		store = historyStore{Store: store, reader: reader}
		archiveSearch = reader
	}
	eng := engine.New(cfg.Engine, store, cl.router, logger)
	eng.SetMetrics(m.Engine)
	if an.writer != nil {
		eng.SetEvents(an.writer)
	}
	eng.Start()
	defer eng.Close(context.Background())

	authSvc, err := auth.New(cfg.Auth, cfg.DataDir, store, logger, time.Now)
	if err != nil {
		return err
	}
	authSvc.SetMetrics(m.RateLimit)
	checker := health.NewChecker()
	mediaDeps, err := openMedia(ctx, cfg, store, authSvc.DeriveKey("media-urls"), logger)
	if err != nil {
		return err
	}
	if mediaDeps != nil {
		defer mediaDeps.Blobs.Close()
	}
	app, appBuilt := webApp(cfg.WebDir, logger)
	srv, err := server.New(cfg.Chat, server.Deps{
		Store:        store,
		Engine:       eng,
		Hub:          h,
		Auth:         authSvc,
		Authenticate: authSvc.Verifier().Interceptor(),
		Health:       checker,
		Logger:       logger,
		Layout:       cfg.Cluster,
		Router:       cl.router,
		Presence:     cl.presence,
		Metrics:      m,
		// Tracing outermost, so that a call's span covers its metrics.
		Interceptors: append(tr.Interceptors(), m.RPC.Interceptor()),
		Fallback:     app,
		Media:        mediaDeps,
		Admin:        an.admin,
		Events:       an.recorder(),
		Archive:      archiveSearch,
	})
	if err != nil {
		return err
	}
	// A revoked session (logout, refresh-token reuse) loses its live
	// stream at once, not just its next call.
	authSvc.SetOnRevoke(cl.closeDevice)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	if tlsCfg != nil {
		// HTTP/2 by ALPN. Not h2c, which has no place next to TLS (and
		// which net/http would not serve on a TLS connection anyway).
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		Protocols:         protocols,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ConnState:         m.HTTP.ConnState,
	}
	serveErr := make(chan error, 1)
	go func() {
		if tlsCfg != nil {
			// The certificate comes from TLSConfig.GetCertificate.
			serveErr <- httpSrv.ServeTLS(ln, "", "")
			return
		}
		serveErr <- httpSrv.Serve(ln)
	}()
	sweepCtx, stopSweeper := context.WithCancel(ctx)
	sweeperDone := make(chan struct{})
	go func() {
		defer close(sweeperDone)
		srv.RunMediaSweeper(sweepCtx)
	}()
	defer func() {
		stopSweeper()
		<-sweeperDone
	}()
	checker.SetServing("", healthv1.HealthCheckResponse_SERVING)
	ready.serving(func(ctx context.Context) error {
		if err := cl.ready(); err != nil {
			return err
		}
		if _, err := store.Epoch(ctx); err != nil {
			return fmt.Errorf("store unreachable: %w", err)
		}
		return nil
	})
	addr := ln.Addr().String()
	scheme, grpcurlFlags := "http", "-plaintext "
	if tlsCfg != nil {
		scheme, grpcurlFlags = "https", ""
	}
	logger.Info("parleyd ready", "listen", addr, "tls", tlsCfg != nil, "data_dir", cfg.DataDir)
	fmt.Fprintf(stdout, "parleyd is serving on %s://%s (Connect, gRPC, gRPC-Web; data in %s)\n", scheme, addr, cfg.DataDir)
	fmt.Fprintf(stdout, "  try: go run ./clients/go/cmd/parley -server %s://%s register alice\n", scheme, addr)
	fmt.Fprintf(stdout, "       grpcurl %s%s list\n", grpcurlFlags, addr)
	if appBuilt {
		fmt.Fprintf(stdout, "  web app: %s://%s/\n", scheme, addr)
	}

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case err := <-adminSrv.err:
		return fmt.Errorf("admin: serve: %w", err)
	}

	logger.Info("shutting down")
	ready.stopping()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// NOT_SERVING first, so balancers stop sending new clients; then end
	// the Watch streams, which http.Server.Shutdown would wait for.
	checker.Shutdown()
	checker.Close()
	if err := srv.CloseStreams(shutdownCtx); err != nil {
		logger.Warn("streams did not close in time", "err", err)
	}
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("http shutdown", "err", err)
		httpSrv.Close()
	}
	stopSweeper()
	<-sweeperDone
	if err := eng.Close(shutdownCtx); err != nil {
		logger.Warn("engine shutdown", "err", err)
	}
	// After the streams and the engine recorded their last events; the
	// final flush writes them.
	an.stop()
	// After the engine: its last commits are in the outbox; the next
	// archiver to hold the lease archives them.
	stopArchive()
	// After the engine: its last fan-outs still publish.
	cl.close()
	if err := rawStore.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	adminSrv.shutdown(shutdownCtx, logger)
	logger.Info("stopped")
	return nil
}

// cluster is how this process reaches devices: the hub alone, or with
// -redis, the hub plus the other processes through Redis.
type cluster struct {
	router   engine.Router
	presence server.Presence // nil: the hub's
	// closeDevice ends a revoked device's stream wherever it is.
	closeDevice func(deviceID string)
	close       func()
	// stopped holds why routing stopped for good (Redis refuses the
	// stream), which makes the process unready.
	stopped atomic.Pointer[error]
}

// ready reports whether routing works: always on a single node; in a
// cluster, the process joined its shard's stream at start and its reader
// has not stopped for good.
func (c *cluster) ready() error {
	if p := c.stopped.Load(); p != nil {
		return fmt.Errorf("cluster routing stopped: %w", *p)
	}
	return nil
}

// openCluster connects to Redis when configured, joins this process's
// shard stream (before any device connects, so none misses what is
// published from now on) and starts reading it and refreshing presence.
// close stops both and disconnects; it is idempotent.
func openCluster(ctx context.Context, cfg config.Config, node string, h *hub.Hub, m *metrics.Route, logger *slog.Logger) (*cluster, error) {
	if cfg.Redis == "" {
		return &cluster{
			router:      h,
			closeDevice: func(deviceID string) { h.CloseDeviceAnyUser(deviceID, hub.ErrRevoked) },
			close:       func() {},
		}, nil
	}
	rd, err := redis.New(ctx, redis.Config{URL: cfg.Redis, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	router := route.New(route.Config{Node: node}, h, rd, cfg.Cluster, logger)
	router.SetMetrics(m)
	if err := router.Join(ctx); err != nil {
		_ = rd.Close()
		return nil, fmt.Errorf("redis: join shard %d: %w", cfg.Cluster.Shard, err)
	}
	presence := route.NewPresence(rd, h, node, cfg.PresenceTTL, logger)
	presence.SetMetrics(m)
	runCtx, cancel := context.WithCancel(context.Background())
	cl := &cluster{router: router, presence: presence}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := router.Run(runCtx); err != nil {
			// Redis refuses the stream for good (wrong key type, ACLs):
			// devices still get everything through catch-up, but not live
			// from other processes.
			logger.Error("cluster routing stopped", "err", err)
			cl.stopped.Store(&err)
		}
	})
	wg.Go(func() { presence.Run(runCtx) })
	logger.Info("cluster routing through redis", "node", node, "shard", cfg.Cluster.Shard, "shards", cfg.Cluster.Shards)
	var once sync.Once
	cl.closeDevice = func(deviceID string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		router.CloseDevice(ctx, deviceID)
	}
	cl.close = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := rd.Close(); err != nil {
				logger.Warn("close redis", "err", err)
			}
		})
	}
	return cl, nil
}

// defaultNode names a process after its host and port: unique on one
// machine, stable across restarts on a fixed port.
func defaultNode(listen string) string {
	host, err := os.Hostname()
	if err != nil {
		host = "parleyd"
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil {
		port = listen
	}
	return host + "-" + port
}

// startArchive starts the message archiver in a goroutine when
// cfg.Archive.Enabled, and returns its ClickHouse (connected in the
// background) for the history reader. The returned stop cancels the
// archiver, waits for it (it gives its lease up) and closes ClickHouse;
// it is idempotent. Nothing runs, and the ClickHouse is nil, when the
// archive is off.
func startArchive(ctx context.Context, cfg config.Config, store storage.Store, node string, logger *slog.Logger, m *metrics.Archive) (func(), *lazyClickHouse, error) {
	if !cfg.Archive.Enabled {
		return func() {}, nil, nil
	}
	src, ok := store.(archive.Source)
	if !ok {
		return nil, nil, errors.New("archive: the store keeps no archive outbox")
	}
	ch := openLazy(ctx, cfg.Archive.ClickHouse, logger.With("backend", "clickhouse"))
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Until ClickHouse answers, batches fail as unavailable and the
		// archiver backs off; the outbox keeps every change meanwhile.
		a := archive.New(cfg.Archive.Config, src, ch, node, logger, m)
		if err := a.Run(runCtx); err != nil {
			logger.Error("archive stopped", "err", err)
		}
	}()
	return sync.OnceFunc(func() {
		cancel()
		<-done
		ch.close()
	}), ch, nil
}

// openArchive opens ClickHouse, retrying with backoff until it answers;
// nil once ctx ends. An unreachable archive must not keep parleyd from
// serving: the store's outbox keeps every change until it is back.
func openArchive(ctx context.Context, cfg clickhouse.Config, logger *slog.Logger) *clickhouse.DB {
	backoff := time.Second
	for {
		db, err := clickhouse.Open(ctx, cfg)
		if err == nil {
			return db
		}
		if ctx.Err() != nil {
			return nil
		}
		logger.Warn("archive: clickhouse unavailable; retrying", "err", err, "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// openStore opens the configured system of record.
func openStore(ctx context.Context, cfg config.Config) (storage.Store, error) {
	if cfg.Store != "" {
		// Open applies pending migrations under an advisory lock, so
		// several processes may start at once.
		return postgres.Open(ctx, postgres.Config{DSN: cfg.Store})
	}
	return embedded.Open(ctx, embedded.Config{Path: filepath.Join(cfg.DataDir, "parley.db")})
}

// migrate applies the schema migrations of the configured store and
// exits: `parleyd migrate [flags]`, for deployments that migrate before
// rolling out.
func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Store == "" {
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return fmt.Errorf("data dir: %w", err)
		}
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	epoch, err := st.Epoch(ctx)
	if err != nil {
		_ = st.Close()
		return err
	}
	fmt.Fprintf(stdout, "schema is current (epoch %s)\n", epoch)
	return st.Close()
}

// archiveOff is "parleyd archive-off": it switches the store's archive
// outbox off and empties it, for a deployment that stops archiving (with
// archive.enabled false the archiver stops, but the store would go on
// queueing every message for it). It refuses while this configuration
// still enables the archive, since any process running with it switches
// the outbox back on, and the store refuses once history has moved to
// the archive.
func archiveOff(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Archive.Enabled {
		return errors.New("archive-off: archive.enabled is set; turn it off here and on every process first")
	}
	st, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	outbox, ok := st.(storage.ArchiveOutbox)
	if !ok {
		return errors.Join(errors.New("archive-off: the store keeps no archive outbox"), st.Close())
	}
	if err := outbox.DisableArchive(ctx); err != nil {
		return errors.Join(fmt.Errorf("archive-off: %w", err), st.Close())
	}
	fmt.Fprintln(stdout, "the archive outbox is off and empty; enabling the archive again backfills it from the start")
	return st.Close()
}

// newLogger logs at level (validated by config) in format, text or json.
func newLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// buildVersion is the module version parleyd was built as ("(devel)"
// for a build from a checkout).
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.Main.Version
	}
	return "unknown"
}

// readiness is what /readyz answers: not ready while starting and once
// shutting down; in between, whatever the check says.
type readiness struct {
	check    atomic.Pointer[func(context.Context) error]
	shutdown atomic.Bool
}

func (r *readiness) serving(check func(context.Context) error) { r.check.Store(&check) }

func (r *readiness) stopping() { r.shutdown.Store(true) }

func (r *readiness) ready(ctx context.Context) error {
	if r.shutdown.Load() {
		return errors.New("shutting down")
	}
	check := r.check.Load()
	if check == nil {
		return errors.New("starting")
	}
	return (*check)(ctx)
}

// adminServer is the admin listener's server; the zero value (admin
// endpoints disabled) does nothing.
type adminServer struct {
	srv *http.Server
	err chan error // Serve's error; never sent to when disabled
}

// serveAdmin serves the admin endpoints (server/admin) on addr, unless
// addr is empty, and says where on stdout.
func serveAdmin(addr string, reg *prometheus.Registry, ready *readiness, logger *slog.Logger, stdout io.Writer) (*adminServer, error) {
	a := &adminServer{err: make(chan error, 1)}
	if addr == "" {
		return a, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin listen (set -admin-listen to another address, or empty to disable): %w", err)
	}
	a.srv = &http.Server{
		Handler:           admin.Handler(admin.Config{Gatherer: reg, Ready: ready.ready, Logger: logger}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	go func() {
		if err := a.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			a.err <- err
		}
	}()
	url := "http://" + ln.Addr().String()
	logger.Info("admin endpoints", "listen", ln.Addr().String())
	fmt.Fprintf(stdout, "parleyd admin endpoints on %s (/metrics, /debug/pprof/, /healthz, /readyz)\n", url)
	return a, nil
}

// shutdown stops the admin server gracefully (up to ctx), then for good.
func (a *adminServer) shutdown(ctx context.Context, logger *slog.Logger) {
	if a.srv == nil {
		return
	}
	if err := a.srv.Shutdown(ctx); err != nil {
		logger.Warn("admin shutdown", "err", err)
	}
	a.close()
}

// close stops the admin server at once; a second call is a no-op.
func (a *adminServer) close() {
	if a.srv != nil {
		_ = a.srv.Close()
	}
}

// apiTLS is the API listener's TLS configuration, or nil when cfg names
// no files: TLS 1.2 or later, h2 and http/1.1 by ALPN, and the key pair
// from the files, loaded now (failing on a bad pair) and again whenever
// they change.
func apiTLS(cfg tlsfiles.Config, logger *slog.Logger) (*tls.Config, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	pair, err := tlsfiles.New(cfg, logger)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: pair.GetCertificate,
	}, nil
}

// webApp is the handler for the built web app, or nil when dir is empty;
// built says whether the app is there. An app that was never built is
// worth one warning at start: the page at / then says how to build it.
func webApp(dir string, logger *slog.Logger) (h http.Handler, built bool) {
	if dir == "" {
		return nil, false
	}
	h, err := web.New(dir)
	if err != nil {
		logger.Warn("serving a placeholder at /: build the web app with `make web`", "err", err)
		return h, false
	}
	return h, true
}

// openMedia builds MediaService's storage from cfg.Media: nil when media is
// off (backend none, or a cluster that configured no shared storage).
func openMedia(ctx context.Context, cfg config.Config, store server.MediaStore, urlKey []byte, logger *slog.Logger) (*server.MediaDeps, error) {
	var blobs storage.BlobStore
	switch cfg.MediaBackend() {
	case config.MediaNone:
		logger.Info("media off: image and file messages are refused (set media.backend to s3 to share media across processes)")
		return nil, nil
	case config.MediaS3:
		st, err := s3.New(ctx, cfg.Media.S3)
		if err != nil {
			return nil, fmt.Errorf("media: %w", err)
		}
		blobs = st
	default:
		dir := cfg.Media.Dir
		if dir == "" {
			dir = filepath.Join(cfg.DataDir, "media")
		}
		st, err := blobfs.New(blobfs.Config{Dir: dir})
		if err != nil {
			return nil, fmt.Errorf("media: %w", err)
		}
		blobs = st
	}
	// Uploads in progress stay on this process's disk: a resumed upload
	// must come back to the process that holds its first part.
	staging, err := media.NewStaging(filepath.Join(cfg.DataDir, "uploads"), cfg.Media.Limits())
	if err != nil {
		_ = blobs.Close()
		return nil, err
	}
	return &server.MediaDeps{Config: cfg.Media.MediaConfig, Store: store, Blobs: blobs, Staging: staging, URLKey: urlKey}, nil
}
