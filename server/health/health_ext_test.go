package health_test

import (
	"context"
	"fmt"
	"testing"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectinprocess"
	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
	"github.com/parley-im/parley/server/health"
	"github.com/stretchr/testify/require"
)

const chatService = "parley.v1.ChatService"

func newClient(tb testing.TB, checker *health.Checker) healthv1connect.HealthClient {
	tb.Helper()
	server := connect.NewServer()
	checker.Register(server)
	return healthv1connect.NewHealthClient(connect.NewClient(connectinprocess.New(server)))
}

func TestCheck(t *testing.T) {
	t.Parallel()
	checker := health.NewChecker()
	checker.SetServing(chatService, health.NotServing)
	client := newClient(t, checker)

	tests := []struct {
		name    string
		service string
		want    health.Status
		code    connect.Code
	}{
		{name: "server", service: health.Server, want: health.Serving},
		{name: "registered_service", service: chatService, want: health.NotServing},
		{name: "unknown_service", service: "no.such.Service", code: connect.CodeNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			res, err := client.Check(t.Context(), &healthv1.HealthCheckRequest{Service: tt.service})
			if tt.code != 0 {
				require.Equal(t, tt.code, connect.CodeOf(err), "err: %v", err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, res.GetStatus())
		})
	}
}

func TestShutdown(t *testing.T) {
	t.Parallel()
	checker := health.NewChecker()
	checker.SetServing(chatService, health.Serving)
	client := newClient(t, checker)

	checker.Shutdown()
	checker.Shutdown() // idempotent
	// A draining server never goes back to serving.
	checker.SetServing(health.Server, health.Serving)

	for _, service := range []string{health.Server, chatService} {
		res, err := client.Check(t.Context(), &healthv1.HealthCheckRequest{Service: service})
		require.NoError(t, err)
		require.Equal(t, health.NotServing, res.GetStatus(), "service %q", service)
	}
	_, err := client.Check(t.Context(), &healthv1.HealthCheckRequest{Service: "no.such.Service"})
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))
}

func TestWatch(t *testing.T) {
	t.Parallel()

	t.Run("streams_every_change", func(t *testing.T) {
		t.Parallel()
		checker := health.NewChecker()
		stream := watch(t, newClient(t, checker), health.Server)
		requireNext(t, stream, health.Serving)

		checker.SetServing(health.Server, health.NotServing)
		requireNext(t, stream, health.NotServing)
		checker.SetServing(health.Server, health.Serving)
		requireNext(t, stream, health.Serving)
	})

	t.Run("unknown_service_until_registered", func(t *testing.T) {
		t.Parallel()
		checker := health.NewChecker()
		stream := watch(t, newClient(t, checker), chatService)
		requireNext(t, stream, health.ServiceUnknown)

		checker.SetServing(chatService, health.Serving)
		requireNext(t, stream, health.Serving)
	})

	t.Run("coalesces_to_latest", func(t *testing.T) {
		t.Parallel()
		checker := health.NewChecker()
		stream := watch(t, newClient(t, checker), health.Server)
		requireNext(t, stream, health.Serving)

		// The watcher is not reading: it must not block SetServing, and it
		// must end on the latest status.
		for i := range 100 {
			checker.SetServing(health.Server, []health.Status{health.NotServing, health.Serving}[i%2])
		}
		checker.SetServing(health.Server, health.NotServing)
		for {
			res, err := stream.Receive()
			require.NoError(t, err)
			if res.GetStatus() == health.NotServing {
				break
			}
		}
	})

	t.Run("shutdown_reports_not_serving", func(t *testing.T) {
		t.Parallel()
		checker := health.NewChecker()
		stream := watch(t, newClient(t, checker), health.Server)
		requireNext(t, stream, health.Serving)

		checker.Shutdown()
		requireNext(t, stream, health.NotServing)
	})

	t.Run("close_ends_streams", func(t *testing.T) {
		t.Parallel()
		checker := health.NewChecker()
		client := newClient(t, checker)
		stream := watch(t, client, health.Server)
		requireNext(t, stream, health.Serving)

		checker.Close()
		checker.Close() // idempotent
		requireEnd(t, stream, connect.CodeUnavailable)

		// New streams fail the same way; Check still answers.
		requireEnd(t, watch(t, client, health.Server), connect.CodeUnavailable)
		res, err := client.Check(t.Context(), &healthv1.HealthCheckRequest{})
		require.NoError(t, err)
		require.Equal(t, health.NotServing, res.GetStatus())
	})

	t.Run("client_cancel_ends_stream", func(t *testing.T) {
		t.Parallel()
		checker := health.NewChecker()
		ctx, cancel := context.WithCancel(t.Context())
		stream, err := newClient(t, checker).Watch(ctx, &healthv1.HealthCheckRequest{})
		require.NoError(t, err)
		requireNext(t, stream, health.Serving)

		cancel()
		_, err = stream.Receive()
		require.ErrorIs(t, err, context.Canceled)
	})
}

func ExampleChecker() {
	checker := health.NewChecker()
	checker.SetServing("parley.v1.ChatService", health.Serving)

	server := connect.NewServer()
	checker.Register(server)
	client := healthv1connect.NewHealthClient(connect.NewClient(connectinprocess.New(server)))

	res, _ := client.Check(context.Background(), &healthv1.HealthCheckRequest{Service: "parley.v1.ChatService"})
	fmt.Println(res.GetStatus())

	// While the server drains, readiness checks fail.
	checker.Shutdown()
	res, _ = client.Check(context.Background(), &healthv1.HealthCheckRequest{})
	fmt.Println(res.GetStatus())
	// Output:
	// SERVING
	// NOT_SERVING
}

func watch(tb testing.TB, client healthv1connect.HealthClient, service string) healthv1connect.HealthWatchClientStream {
	tb.Helper()
	stream, err := client.Watch(tb.Context(), &healthv1.HealthCheckRequest{Service: service})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = stream.Close() })
	return stream
}

func requireNext(tb testing.TB, stream healthv1connect.HealthWatchClientStream, want health.Status) {
	tb.Helper()
	res, err := stream.Receive()
	require.NoError(tb, err)
	require.Equal(tb, want, res.GetStatus())
}

// requireEnd reads the stream to its end: Close may still deliver the
// NOT_SERVING it set before the stream ends.
func requireEnd(tb testing.TB, stream healthv1connect.HealthWatchClientStream, code connect.Code) {
	tb.Helper()
	res, err := stream.Receive()
	for err == nil {
		require.Equal(tb, health.NotServing, res.GetStatus())
		res, err = stream.Receive()
	}
	var connectErr *connect.Error
	require.ErrorAs(tb, err, &connectErr)
	require.Equal(tb, code, connectErr.Code(), "err: %v", err)
}
