package e2e_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// TestSlowDeviceResyncs: a device that stops reading its stream while
// messages keep coming is dropped by the server (Resync, or the stream ends
// with ResourceExhausted) instead of being buffered for without bound; once
// it reads again it reconnects and catches up fully.
func TestSlowDeviceResyncs(t *testing.T) {
	t.Parallel()
	p := startParleyd(t, "-outbound-queue", "4")
	alice := newUser(t, p.URL(), "alice", 1)
	bob := newUser(t, p.URL(), "bob", 1)
	dm := createDirect(t, alice, bob)
	alice.dev(0).connect(t)
	slow := bob.dev(0)
	// A one-slot event queue: the Session stops reading its stream as soon
	// as the application stops taking events.
	resume := slow.connectPaused(t, parley.WithQueueSize(1))

	// Large incompressible messages (the server gzips frames), so that the
	// stalled stream's HTTP/2 flow-control window (4 MiB in Go's client)
	// and the loopback socket buffers (a few MiB more with autotuning)
	// fill and the server's queue overflows. 160 messages (about 7 MiB
	// gzipped) once fitted in those buffers on a slow run: 256 leave a
	// wide margin.
	const n, workers = 256, 8
	body := randomText(60 << 10)
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				_, err := alice.client().Chat().SendMessage(t.Context(), &parleyv1.SendMessageRequest{
					ConversationId: dm, ClientMsgId: fmt.Sprint("bulk-", i), Content: text(fmt.Sprint(i, body)),
				})
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	last := lastSeq(t, alice, dm)
	t.Logf("sent %d in %s", n, time.Since(start))
	alice.dev(0).rec.waitSeq(t, dm, last)
	t.Logf("fanned out after %s", time.Since(start))

	resume()
	// The client learns of the drop in whichever direction fails first:
	// reading (Resync, or the stream ending with ResourceExhausted) or
	// writing its acks into a stream the server closed (EOF). The server's
	// own count says why it ended the stream.
	dropped := waitEvent(t, slow.rec, "disconnect after resuming", func(e *parley.DisconnectedEvent) bool { return e.Err != nil })
	t.Logf("dropped: %v", dropped.Err)
	require.GreaterOrEqual(t, slowConsumerDrops(t, p.AdminURL()), 1.0,
		"the server did not count a slow-consumer drop; the client saw: %v", dropped.Err)
	slow.rec.waitSeq(t, dm, last)
	t.Logf("caught up after %s", time.Since(start))
	requireSameMessages(t, history(t, bob.client(), dm), slow.rec.messages(dm), "caught up fully, once each, in order")
	_, reconnected := find(slow.rec, func(e *parley.ConnectedEvent) bool { return e.Reconnect })
	require.True(t, reconnected)
}

// randomText returns n random letters and digits.
func randomText(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

// slowConsumerDrops reads parley_stream_disconnects_total{reason="slow_consumer"}
// from the server's /metrics.
func slowConsumerDrops(t *testing.T, adminURL string) float64 {
	t.Helper()
	v, err := metric(t.Context(), adminURL, `parley_stream_disconnects_total{reason="slow_consumer"}`)
	require.NoError(t, err)
	return v
}

// metric reads one series (name with its labels, as /metrics prints it)
// from a server's /metrics; 0 when it is not there yet. It does not fail
// the test, so that polls may call it from any goroutine.
func metric(ctx context.Context, adminURL, series string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(body)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, nil
}
