// Package tracing sets up OpenTelemetry tracing for parleyd: a span per
// call (connectrpc.com/otelconnect), batched and exported over OTLP/gRPC
// (the official otlptrace exporter over a client of its own; see
// otlpClient).
// It is off unless an endpoint is configured, and then costs nothing: no
// exporter, no goroutines, no interceptor.
//
// Nothing here touches OpenTelemetry's globals: the tracer provider and
// the propagator (W3C trace context and baggage) are handed to the
// interceptor directly. The SDK's standard environment variables still
// apply to what it configures, e.g. OTEL_TRACES_SAMPLER and
// OTEL_BSP_SCHEDULE_DELAY.
package tracing

import (
	"context"
	"errors"
	"fmt"

	"connectrpc.com/connect/v2"
	"connectrpc.com/otelconnect"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Config says where spans go and what they are attributed to.
type Config struct {
	// Endpoint is the OTLP/gRPC collector: empty disables tracing;
	// host:port speaks cleartext gRPC (a collector on the node or in the
	// pod); an http:// or https:// URL chooses explicitly.
	Endpoint string
	// Service is service.name; Instance is service.instance.id (the
	// node name); Version is service.version.
	Service, Instance, Version string
}

// Tracing is the tracing of one process. The zero value and nil are off.
type Tracing struct {
	provider    *sdktrace.TracerProvider
	interceptor connect.ServerInterceptor
}

// New starts tracing as cfg says: with an empty Endpoint it returns an
// off Tracing and starts nothing. The exporter connects lazily, so New
// does not fail when the collector is down; spans are dropped until it is
// back.
func New(ctx context.Context, cfg Config) (*Tracing, error) {
	if cfg.Endpoint == "" {
		return &Tracing{}, nil
	}
	client, err := newOTLPClient(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	exp, err := otlptrace.New(ctx, client)
	if err != nil {
		return nil, fmt.Errorf("tracing: otlp exporter for %s: %w", cfg.Endpoint, err)
	}
	return newTracing(cfg, sdktrace.WithBatcher(exp))
}

// newTracing builds a Tracing whose spans go to the span processor opt
// installs (a batcher in production, a syncer in tests).
func newTracing(cfg Config, opt sdktrace.TracerProviderOption) (*Tracing, error) {
	res := resource.NewSchemaless(
		attribute.String("service.name", cfg.Service),
		attribute.String("service.instance.id", cfg.Instance),
		attribute.String("service.version", cfg.Version),
	)
	tp := sdktrace.NewTracerProvider(opt, sdktrace.WithResource(res))
	in, err := otelconnect.NewServerInterceptor(
		otelconnect.WithTracerProvider(tp),
		otelconnect.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})),
		// Metrics are Prometheus's (server/metrics), not OTel's.
		otelconnect.WithoutMetrics(),
	)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("tracing: interceptor: %w", err), tp.Shutdown(context.Background()))
	}
	return &Tracing{provider: tp, interceptor: in}, nil
}

// Enabled reports whether spans are recorded.
func (t *Tracing) Enabled() bool { return t != nil && t.provider != nil }

// Interceptors returns the server interceptor that starts a span per
// call, or none when tracing is off. Install it outermost.
func (t *Tracing) Interceptors() []connect.ServerInterceptor {
	if !t.Enabled() {
		return nil
	}
	return []connect.ServerInterceptor{t.interceptor}
}

// Shutdown exports the spans still buffered (up to ctx) and stops the
// exporter. It does nothing when tracing is off; a second call is a
// no-op.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if !t.Enabled() {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("tracing: shutdown: %w", err)
	}
	return nil
}
