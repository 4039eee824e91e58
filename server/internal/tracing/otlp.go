package tracing

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// exportMethod is OTLP's TraceService.Export.
const exportMethod = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"

// exportTimeout bounds one export round trip.
const exportTimeout = 10 * time.Second

// otlpClient is an otlptrace.Client speaking OTLP/gRPC.
//
// It exists instead of otlptracegrpc because that exporter imports the
// collector's generated package, whose gRPC-gateway code links
// google.golang.org/grpc/health/grpc_health_v1: its grpc/health/v1
// descriptors collide with parley's own (clients/go/gen/grpc/health/v1)
// and protobuf's registry panics at start-up. The request is one repeated
// field, encoded here by hand; the rest (span conversion, batching) is the
// official otlptrace exporter's.
type otlpClient struct {
	target string
	creds  credentials.TransportCredentials

	mu   sync.Mutex
	conn *grpc.ClientConn
}

// newOTLPClient parses endpoint: host:port (cleartext), or an http:// or
// https:// URL.
func newOTLPClient(endpoint string) (*otlpClient, error) {
	c := &otlpClient{target: endpoint, creds: insecure.NewCredentials()}
	if strings.Contains(endpoint, "://") {
		u, err := url.Parse(endpoint)
		if err != nil {
			return nil, fmt.Errorf("tracing: endpoint %q: %w", endpoint, err)
		}
		switch u.Scheme {
		case "http":
		case "https":
			c.creds = credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})
		default:
			return nil, fmt.Errorf("tracing: endpoint %q: want host:port, http:// or https://", endpoint)
		}
		c.target = u.Host
	}
	if c.target == "" {
		return nil, fmt.Errorf("tracing: endpoint %q has no host", endpoint)
	}
	return c, nil
}

// Start creates the connection; gRPC dials lazily, so a collector that is
// down fails the exports, not Start.
func (c *otlpClient) Start(context.Context) error {
	conn, err := grpc.NewClient(c.target, grpc.WithTransportCredentials(c.creds))
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	c.mu.Lock()
	c.conn = conn
	c.mu.Unlock()
	return nil
}

// Stop closes the connection.
func (c *otlpClient) Stop(context.Context) error {
	c.mu.Lock()
	conn := c.conn
	c.conn = nil
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	return conn.Close()
}

// UploadTraces sends one ExportTraceServiceRequest.
func (c *otlpClient) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return errors.New("tracing: exporter stopped")
	}
	// message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
	var req []byte
	for _, rs := range spans {
		b, err := proto.Marshal(rs)
		if err != nil {
			return fmt.Errorf("tracing: encode spans: %w", err)
		}
		req = protowire.AppendTag(req, 1, protowire.BytesType)
		req = protowire.AppendBytes(req, b)
	}
	ctx, cancel := context.WithTimeout(ctx, exportTimeout)
	defer cancel()
	var res []byte // ExportTraceServiceResponse: partial success, not read
	if err := conn.Invoke(ctx, exportMethod, &req, &res, grpc.ForceCodec(rawCodec{})); err != nil {
		return fmt.Errorf("tracing: export to %s: %w", c.target, err)
	}
	return nil
}

// rawCodec passes encoded protobuf messages through as *[]byte.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("tracing: raw codec cannot marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("tracing: raw codec cannot unmarshal into %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}
