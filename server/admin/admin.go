// Package admin serves parleyd's operator endpoints on a listener of their
// own, never on the public API listener: Prometheus metrics, pprof
// profiles, and the liveness and readiness probes.
//
//	/metrics        Prometheus text exposition of Config.Gatherer
//	/debug/pprof/   net/http/pprof (index, cmdline, profile, symbol, trace,
//	                and every named profile: heap, goroutine, allocs, ...)
//	/healthz        liveness: 200 while the process serves HTTP at all
//	/readyz         readiness: 200 when Config.Ready returns nil, else 503
//	                with the reason
//
// Keep the admin listener on loopback or a private network: profiles
// reveal memory contents and cost CPU.
package admin

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readyTimeout bounds one readiness check: a store slower than the
// default Kubernetes probe timeout (1 s) to answer counts as unreachable.
const readyTimeout = time.Second

// Config is what the admin endpoints serve.
type Config struct {
	// Gatherer is the registry /metrics exposes.
	Gatherer prometheus.Gatherer
	// Ready reports whether the process should receive traffic: nil when
	// it should, or why not. It is called once per /readyz request, with
	// a deadline. nil means always ready.
	Ready func(ctx context.Context) error
	// Logger records errors while serving metrics; nil discards them.
	Logger *slog.Logger
}

// Handler returns the admin endpoints on a mux of their own. The pprof
// handlers are registered here explicitly; importing net/http/pprof also
// registers them on http.DefaultServeMux, which parleyd never serves.
func Handler(cfg Config) http.Handler {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
		// Scrapes of a busy process must not pile up.
		MaxRequestsInFlight: 4,
	}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if cfg.Ready != nil {
			ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
			defer cancel()
			if err := cfg.Ready(ctx); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
				return
			}
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	return mux
}
