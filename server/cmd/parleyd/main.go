// Command parleyd is the Parley server. With no configuration it runs the
// embedded single-node setup: SQLite under ./data, listening on
// 127.0.0.1:8080 for Connect, gRPC and gRPC-Web (HTTP/1.1 and h2c).
// -store postgres://… keeps everything in PostgreSQL instead, and with
// -redis redis://… several processes (-shard N -shards M, -node NAME) share
// it, routing live traffic and presence through Redis.
// `parleyd migrate [flags]` applies the store's migrations and exits.
package main

import (
	"context"
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
	"sync"
	"syscall"
	"time"

	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/server"
	"github.com/parley-im/parley/server/auth"
	"github.com/parley-im/parley/server/config"
	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/server/health"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/route"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/postgres"
	"github.com/parley-im/parley/storage/redis"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	var err error
	if len(os.Args) > 1 && os.Args[1] == "migrate" {
		err = migrate(ctx, os.Args[2:], os.Getenv, os.Stdout, os.Stderr)
	} else {
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
// gracefully: health turns NOT_SERVING, streams are told to reconnect,
// in-flight calls finish, acks are flushed, the store is closed.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, err := config.Load(args, getenv, stderr)
	if err != nil {
		return err
	}
	logger := newLogger(stderr, cfg.LogLevel)

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()

	h := hub.New(cfg.Hub)
	cl, err := openCluster(ctx, cfg, h, logger)
	if err != nil {
		return err
	}
	defer cl.close()
	eng := engine.New(cfg.Engine, store, cl.router, logger)
	eng.Start()
	defer eng.Close(context.Background())

	authSvc, err := auth.New(cfg.Auth, cfg.DataDir, store, logger, time.Now)
	if err != nil {
		return err
	}
	checker := health.NewChecker()
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
	protocols.SetUnencryptedHTTP2(true)
	httpSrv := &http.Server{
		Handler:           srv.Handler(),
		Protocols:         protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	checker.SetServing("", healthv1.HealthCheckResponse_SERVING)
	addr := ln.Addr().String()
	logger.Info("parleyd ready", "listen", addr, "data_dir", cfg.DataDir)
	fmt.Fprintf(stdout, "parleyd is serving on http://%s (Connect, gRPC, gRPC-Web; data in %s)\n", addr, cfg.DataDir)
	fmt.Fprintf(stdout, "  try: go run ./clients/go/cmd/parley -server http://%s register alice\n", addr)
	fmt.Fprintf(stdout, "       grpcurl -plaintext %s list\n", addr)

	select {
	case <-ctx.Done():
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}

	logger.Info("shutting down")
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
	if err := eng.Close(shutdownCtx); err != nil {
		logger.Warn("engine shutdown", "err", err)
	}
	// After the engine: its last fan-outs still publish.
	cl.close()
	if err := store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
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
}

// openCluster connects to Redis when configured, joins this process's
// shard stream (before any device connects, so none misses what is
// published from now on) and starts reading it and refreshing presence.
// close stops both and disconnects; it is idempotent.
func openCluster(ctx context.Context, cfg config.Config, h *hub.Hub, logger *slog.Logger) (*cluster, error) {
	if cfg.Redis == "" {
		return &cluster{
			router:      h,
			closeDevice: func(deviceID string) { h.CloseDeviceAnyUser(deviceID, hub.ErrRevoked) },
			close:       func() {},
		}, nil
	}
	node := cfg.Node
	if node == "" {
		node = defaultNode(cfg.Listen)
	}
	rd, err := redis.New(ctx, redis.Config{URL: cfg.Redis, Logger: logger})
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	router := route.New(route.Config{Node: node}, h, rd, cfg.Cluster, logger)
	if err := router.Join(ctx); err != nil {
		_ = rd.Close()
		return nil, fmt.Errorf("redis: join shard %d: %w", cfg.Cluster.Shard, err)
	}
	presence := route.NewPresence(rd, h, node, cfg.PresenceTTL, logger)
	runCtx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := router.Run(runCtx); err != nil {
			// Redis refuses the stream for good (wrong key type, ACLs):
			// devices still get everything through catch-up, but not live
			// from other processes.
			logger.Error("cluster routing stopped", "err", err)
		}
	})
	wg.Go(func() { presence.Run(runCtx) })
	logger.Info("cluster routing through redis", "node", node, "shard", cfg.Cluster.Shard, "shards", cfg.Cluster.Shards)
	var once sync.Once
	return &cluster{router: router, presence: presence, closeDevice: func(deviceID string) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		router.CloseDevice(ctx, deviceID)
	}, close: func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if err := rd.Close(); err != nil {
				logger.Warn("close redis", "err", err)
			}
		})
	}}, nil
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

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level)) // validated by config
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}
