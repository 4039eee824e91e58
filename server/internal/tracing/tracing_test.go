package tracing

import (
	"context"
	"net"
	"runtime"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectinprocess"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// Not parallel: it counts the process's goroutines.
func TestOffWithoutEndpoint(t *testing.T) {
	before := runtime.NumGoroutine()
	tr, err := New(t.Context(), Config{Service: "parleyd"})
	require.NoError(t, err)
	require.False(t, tr.Enabled())
	require.Empty(t, tr.Interceptors(), "no interceptor when tracing is off")
	require.Equal(t, before, runtime.NumGoroutine(), "tracing off starts no goroutines")
	require.NoError(t, tr.Shutdown(t.Context()))
	require.NoError(t, (*Tracing)(nil).Shutdown(t.Context()))
	require.False(t, (*Tracing)(nil).Enabled())
}

type locator struct {
	parleyv1connect.UnimplementedClusterServiceHandler
}

func (locator) Locate(context.Context, *parleyv1.LocateRequest) (*parleyv1.LocateResponse, error) {
	return &parleyv1.LocateResponse{Shards: 1}, nil
}

// Every call gets a server span named after its procedure.
func TestSpanPerCall(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tr, err := newTracing(Config{Service: "parleyd", Instance: "n1", Version: "test"}, sdktrace.WithSyncer(exp))
	require.NoError(t, err)
	require.True(t, tr.Enabled())
	t.Cleanup(func() { require.NoError(t, tr.Shutdown(context.Background())) })

	srv := connect.NewServer(tr.Interceptors()...)
	parleyv1connect.RegisterClusterServiceHandler(srv, locator{})
	client := parleyv1connect.NewClusterServiceClient(connect.NewClient(connectinprocess.New(srv)))
	_, err = client.Locate(t.Context(), &parleyv1.LocateRequest{UserId: "u"})
	require.NoError(t, err)

	spans := exp.GetSpans()
	require.Len(t, spans, 1)
	require.Equal(t, "parley.v1.ClusterService/Locate", spans[0].Name)
	attrs := map[string]string{}
	for _, kv := range spans[0].Resource.Attributes() {
		attrs[string(kv.Key)] = kv.Value.AsString()
	}
	require.Equal(t, "parleyd", attrs["service.name"])
	require.Equal(t, "n1", attrs["service.instance.id"])
}

// collector is a fake OTLP/gRPC collector.
type collector struct {
	coltracepb.UnimplementedTraceServiceServer
	got chan *coltracepb.ExportTraceServiceRequest
}

func (c *collector) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	c.got <- req
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// Spans reach an OTLP/gRPC collector, at the latest on Shutdown.
func TestExportsOverOTLP(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	gs := grpc.NewServer()
	col := &collector{got: make(chan *coltracepb.ExportTraceServiceRequest, 16)}
	coltracepb.RegisterTraceServiceServer(gs, col)
	served := make(chan error, 1)
	go func() { served <- gs.Serve(ln) }()
	t.Cleanup(func() {
		gs.Stop()
		require.NoError(t, <-served)
	})

	for _, endpoint := range []string{ln.Addr().String(), "http://" + ln.Addr().String()} {
		tr, err := New(t.Context(), Config{Endpoint: endpoint, Service: "parleyd"})
		require.NoError(t, err)
		require.True(t, tr.Enabled())
		_, span := tr.provider.Tracer("test").Start(t.Context(), "op")
		span.End()
		require.NoError(t, tr.Shutdown(t.Context()))

		req := <-col.got
		require.Len(t, req.GetResourceSpans(), 1)
		rs := req.GetResourceSpans()[0]
		require.Equal(t, "op", rs.GetScopeSpans()[0].GetSpans()[0].GetName())
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		require.Equal(t, "parleyd", service)
	}
}

func TestBadEndpoint(t *testing.T) {
	t.Parallel()
	for _, endpoint := range []string{"ftp://collector:4317", "http://"} {
		_, err := New(t.Context(), Config{Endpoint: endpoint})
		require.Error(t, err, endpoint)
	}
}
