// Package routingtest is the conformance suite of storage.Broker and
// storage.PresenceStore: every implementation's tests call RunBroker and
// RunPresence, so each keeps the contracts routing.go documents.
//
// Behaviour a backend owns alone (trimming, surviving a Redis restart) is
// tested in the backend's package.
package routingtest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// waitTimeout bounds every wait for an entry or a condition.
const waitTimeout = 10 * time.Second

// consumer runs Consume in the background and collects payloads.
type consumer struct {
	got    chan string
	cancel context.CancelFunc
	done   chan error
}

// startConsumer starts b.Consume(shard, group) and stops it when the test
// ends.
func startConsumer(t *testing.T, b storage.Broker, shard int, group string) *consumer {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	c := &consumer{got: make(chan string, 1024), cancel: cancel, done: make(chan error, 1)}
	go func() {
		c.done <- b.Consume(ctx, shard, group, func(_ context.Context, payload []byte) {
			c.got <- string(payload)
		})
	}()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// stop cancels Consume and waits for it to return nil. Idempotent.
func (c *consumer) stop(t *testing.T) {
	t.Helper()
	c.cancel()
	select {
	case err, ok := <-c.done:
		if ok {
			require.NoError(t, err)
			close(c.done)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Consume did not return after its ctx ended")
	}
}

// expect reads len(want) payloads and requires them in order.
func (c *consumer) expect(t *testing.T, want ...string) {
	t.Helper()
	got := make([]string, 0, len(want))
	for range want {
		select {
		case p := <-c.got:
			got = append(got, p)
		case <-time.After(waitTimeout):
			require.Equal(t, want, got, "timed out waiting for entries")
		}
	}
	require.Equal(t, want, got)
}

// publish publishes payloads in order.
func publish(t *testing.T, b storage.Broker, shard int, payloads ...string) {
	t.Helper()
	for _, p := range payloads {
		require.NoError(t, b.Publish(t.Context(), shard, []byte(p)))
	}
}

// seq is prefix+from … prefix+(to-1).
func seq(prefix string, from, to int) []string {
	out := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, prefix+strconv.Itoa(i))
	}
	return out
}
