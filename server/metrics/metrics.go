// Package metrics defines every Prometheus metric parleyd exports, and
// the small structs through which the server's components record them.
//
// Names follow parley_<subsystem>_<name>_<unit>, with _total for counters
// and base units (_seconds). Labels are bounded sets known in advance
// (procedure, protocol, code, reason, op, limiter, kind), never user,
// device or conversation ids: a million connections must not become a
// million series. Every labelled child is resolved once, when the metrics
// are created, so recording on a hot path is an atomic add or a histogram
// bucket search: no map lookups, no allocations. It also means every
// series exists, at zero, from the first scrape, so rates and alerts work
// before the first event.
//
// Components hold a pointer to their part (*Hub, *Engine, ...), and every
// method is safe on a nil pointer, where it does nothing: a component
// built without metrics (tests, tools) records nothing and pays one nil
// check. All methods are safe for concurrent use.
package metrics

import (
	"errors"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "parley"

// Buckets shared by the latency histograms.
var (
	// latencyBuckets span 1 ms to 10 s: delivery and RPC latencies.
	latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	// ioBuckets span 100 µs to 5 s: one store query or broker round trip.
	ioBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5}
	// sizeBuckets are powers of two up to 4096: batch sizes, queue depths.
	sizeBuckets = prometheus.ExponentialBuckets(1, 2, 13)
)

// Metrics is every metric of one parleyd process. Create it with New.
type Metrics struct {
	// HTTP counts the API listener's connections.
	HTTP *HTTP
	// Stream is the device streams' (Connect and Subscribe) lifecycle and
	// send outcomes, recorded by package server.
	Stream *Stream
	// Hub is the per-connection queues and deliveries, recorded by
	// package hub.
	Hub *Hub
	// Engine is commits, acks, catch-up and repair, recorded by package
	// engine.
	Engine *Engine
	// Route is the Redis routing between processes and presence, recorded
	// by package route.
	Route *Route
	// RateLimit counts refusals of every rate limiter.
	RateLimit *RateLimit
	// Store times every store operation (see InstrumentStore).
	Store *Store
	// RPC counts and times every call (see RPC.Interceptor).
	RPC *RPC
	// Archive is the message archiver's progress and lag, recorded by
	// package archive.
	Archive *Archive
}

// New creates every metric and registers it on reg. It fails when a name
// is already registered there (a second New on one registry).
func New(reg prometheus.Registerer) (*Metrics, error) {
	r := &registrar{reg: reg}
	m := &Metrics{
		HTTP:      newHTTP(r),
		Stream:    newStream(r),
		Hub:       newHub(r),
		Engine:    newEngine(r),
		Route:     newRoute(r),
		RateLimit: newRateLimit(r),
		Store:     newStore(r),
		RPC:       newRPC(r),
		Archive:   newArchive(r),
	}
	if err := errors.Join(r.errs...); err != nil {
		return nil, err
	}
	return m, nil
}

// NewRegistry returns a registry holding the Go runtime collector
// (go_goroutines, go_memstats_*, go_gc_*), the process collector
// (process_resident_memory_bytes, process_open_fds, ...) and
// parley_build_info. It is not the global default registry: nothing a
// library registers there is exported by accident.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	// Cannot fail: the names are distinct and the registry new.
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(),
	)
	return reg
}

// WatchReady registers parley_ready on reg: 1 when ready returns nil, 0
// otherwise, asked at every scrape (so it should be quick and bounded),
// for alerts on processes that are up but not ready.
func WatchReady(reg prometheus.Registerer, ready func() error) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "ready",
		Help:      "1 when the process is ready for traffic (what /readyz says: store reachable, cluster routing running, not starting or shutting down), else 0.",
	}, func() float64 {
		if ready() != nil {
			return 0
		}
		return 1
	}))
}

// buildInfo is parley_build_info, always 1, labelled with the module
// version and the Go version that built the binary.
func buildInfo() prometheus.Collector {
	version, revision := "unknown", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		version = bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: namespace,
		Name:      "build_info",
		Help:      "Always 1; the labels say which build of parleyd is running.",
		ConstLabels: prometheus.Labels{
			"version":   version,
			"revision":  revision,
			"goversion": runtime.Version(),
		},
	})
	g.Set(1)
	return g
}

// registrar creates metrics and registers them, collecting the errors so
// that New reports them all at once instead of panicking.
type registrar struct {
	reg  prometheus.Registerer
	errs []error
}

func (r *registrar) register(c prometheus.Collector) {
	if err := r.reg.Register(c); err != nil {
		r.errs = append(r.errs, err)
	}
}

func (r *registrar) counter(subsystem, name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help})
	r.register(c)
	return c
}

func (r *registrar) counterVec(subsystem, name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
	r.register(c)
	return c
}

func (r *registrar) gauge(subsystem, name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help})
	r.register(g)
	return g
}

func (r *registrar) gaugeVec(subsystem, name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help}, labels)
	r.register(g)
	return g
}

func (r *registrar) histogram(subsystem, name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets})
	r.register(h)
	return h
}

func (r *registrar) histogramVec(subsystem, name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Subsystem: subsystem, Name: name, Help: help, Buckets: buckets}, labels)
	r.register(h)
	return h
}
