package health

import (
	"runtime"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectinprocess"
	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
	"github.com/stretchr/testify/require"
)

// TestWatchNoLeak opens many Watch streams, ends half by the client going
// away and the rest by Close, and checks that every watcher is unregistered
// and every goroutine is gone.
func TestWatchNoLeak(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	baseline := runtime.NumGoroutine()

	checker := NewChecker()
	server := connect.NewServer()
	checker.Register(server)
	client := healthv1connect.NewHealthClient(connect.NewClient(connectinprocess.New(server)))

	const n = 20
	streams := make([]healthv1connect.HealthWatchClientStream, n)
	for i := range streams {
		stream, err := client.Watch(t.Context(), &healthv1.HealthCheckRequest{})
		require.NoError(t, err)
		_, err = stream.Receive() // the handler is running once it has sent
		require.NoError(t, err)
		streams[i] = stream
	}
	require.Equal(t, n, checker.watching())

	for _, stream := range streams[:n/2] {
		require.NoError(t, stream.Close())
	}
	require.Eventually(t, func() bool { return checker.watching() == n/2 }, 5*time.Second, time.Millisecond)

	checker.Close()
	checker.Close()
	for _, stream := range streams[n/2:] {
		res, err := stream.Receive()
		for err == nil { // Close may deliver NOT_SERVING before ending the stream
			require.Equal(t, NotServing, res.GetStatus())
			res, err = stream.Receive()
		}
		require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "err: %v", err)
	}
	require.Eventually(t, func() bool { return checker.watching() == 0 }, 5*time.Second, time.Millisecond)
	requireGoroutines(t, baseline)
}

// requireGoroutines polls until the process is back to at most baseline
// goroutines. It does not use require.Eventually, which runs its condition on
// a goroutine of its own.
func requireGoroutines(tb testing.TB, baseline int) {
	tb.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			tb.Fatalf("goroutines: baseline %d, now %d:\n%s", baseline, n, buf)
		}
		time.Sleep(time.Millisecond)
	}
}
