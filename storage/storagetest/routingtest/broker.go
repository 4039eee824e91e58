package routingtest

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// NewBroker returns a fresh broker for one test. Two calls within one test
// must return brokers that share their streams (two processes of one
// cluster); brokers of different tests share nothing. The suite closes
// every broker it gets (Close must be idempotent).
type NewBroker func(t *testing.T) storage.Broker

// RunBroker runs the storage.Broker conformance suite; subtests run in
// parallel.
func RunBroker(t *testing.T, newBroker NewBroker) {
	open := func(t *testing.T) storage.Broker {
		t.Helper()
		b := newBroker(t)
		t.Cleanup(func() { require.NoError(t, b.Close()) })
		return b
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) storage.Broker)
	}{
		{"publish_consume_in_order", brokerInOrder},
		{"shards_are_separate", brokerShardsSeparate},
		{"every_group_sees_every_entry", brokerEveryGroup},
		{"new_group_starts_at_newest_entry", brokerNewGroupAtNewest},
		{"restarted_consumer_resumes_and_rereads_unacked", brokerRestartedConsumer},
		{"publish_batch_in_slice_order_per_shard", brokerBatchInOrder},
		{"publish_batch_empty_is_nil", brokerBatchEmpty},
		{"close_stops_consume", brokerClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

func brokerInOrder(t *testing.T, open func(t *testing.T) storage.Broker) {
	b := open(t)
	require.NoError(t, b.Join(t.Context(), 1, "p1"))
	c := startConsumer(t, b, 1, "p1")
	want := seq("m", 0, 300)
	publish(t, b, 1, want...)
	c.expect(t, want...)
}

func brokerShardsSeparate(t *testing.T, open func(t *testing.T) storage.Broker) {
	b := open(t)
	require.NoError(t, b.Join(t.Context(), 1, "p"))
	require.NoError(t, b.Join(t.Context(), 2, "p"))
	c1 := startConsumer(t, b, 1, "p")
	c2 := startConsumer(t, b, 2, "p")
	publish(t, b, 2, "b0")
	publish(t, b, 1, "a0")
	publish(t, b, 2, "b1")
	c1.expect(t, "a0")
	c2.expect(t, "b0", "b1")
}

// brokerEveryGroup has two processes of one shard, each its own group.
func brokerEveryGroup(t *testing.T, open func(t *testing.T) storage.Broker) {
	b1, b2 := open(t), open(t)
	require.NoError(t, b1.Join(t.Context(), 3, "p1"))
	require.NoError(t, b2.Join(t.Context(), 3, "p2"))
	c1 := startConsumer(t, b1, 3, "p1")
	c2 := startConsumer(t, b2, 3, "p2")
	want := seq("m", 0, 50)
	publish(t, b1, 3, want[:25]...)
	publish(t, b2, 3, want[25:]...)
	c1.expect(t, want...)
	c2.expect(t, want...)
}

func brokerNewGroupAtNewest(t *testing.T, open func(t *testing.T) storage.Broker) {
	b := open(t)
	publish(t, b, 1, "before")
	require.NoError(t, b.Join(t.Context(), 1, "p1"))
	require.NoError(t, b.Join(t.Context(), 1, "p1"), "Join is idempotent")
	publish(t, b, 1, "after")
	c := startConsumer(t, b, 1, "p1")
	c.expect(t, "after")
}

func brokerRestartedConsumer(t *testing.T, open func(t *testing.T) storage.Broker) {
	b := open(t)
	require.NoError(t, b.Join(t.Context(), 1, "p1"))
	publish(t, b, 1, seq("m", 0, 10)...)

	// The first run handles m0..m3 and ends while handling m3.
	ctx, cancel := context.WithCancel(t.Context())
	var handled []string
	err := b.Consume(ctx, 1, "p1", func(_ context.Context, p []byte) {
		handled = append(handled, string(p))
		if string(p) == "m3" {
			cancel()
		}
	})
	require.NoError(t, err)
	require.Equal(t, seq("m", 0, 4), handled)

	// Published while no one consumes.
	publish(t, b, 1, seq("m", 10, 15)...)

	// The restarted process (a new broker, same group) sees everything
	// after m3 — whatever the first run had been given but not handled,
	// then the rest — and nothing twice.
	b2 := open(t)
	c := startConsumer(t, b2, 1, "p1")
	c.expect(t, seq("m", 4, 15)...)
	publish(t, b2, 1, "m15")
	c.expect(t, "m15")
	c.stop(t)

	// Everything was acknowledged: a third run sees only what is new.
	publish(t, b2, 1, "m16")
	c3 := startConsumer(t, b2, 1, "p1")
	c3.expect(t, "m16")
}

// brokerBatchInOrder: a batch spanning two shards reaches each shard's
// group in slice order, between the Publish calls made before and after
// it.
func brokerBatchInOrder(t *testing.T, open func(t *testing.T) storage.Broker) {
	b := open(t)
	require.NoError(t, b.Join(t.Context(), 1, "p"))
	require.NoError(t, b.Join(t.Context(), 2, "p"))
	c1 := startConsumer(t, b, 1, "p")
	c2 := startConsumer(t, b, 2, "p")

	publish(t, b, 1, "a0")
	publish(t, b, 2, "b0")
	batch := []storage.Entry{
		{Shard: 1, Payload: []byte("a1")},
		{Shard: 2, Payload: []byte("b1")},
		{Shard: 2, Payload: []byte("b2")},
		{Shard: 1, Payload: []byte("a2")},
		{Shard: 1, Payload: []byte("a3")},
		{Shard: 2, Payload: []byte("b3")},
	}
	require.NoError(t, b.PublishBatch(t.Context(), batch))
	// Payloads are not retained: reusing the buffers changes nothing.
	for _, e := range batch {
		copy(e.Payload, "zz")
	}
	publish(t, b, 2, "b4")
	publish(t, b, 1, "a4")
	require.NoError(t, b.PublishBatch(t.Context(), []storage.Entry{{Shard: 1, Payload: []byte("a5")}}))
	c1.expect(t, seq("a", 0, 6)...)
	c2.expect(t, seq("b", 0, 5)...)

	// A batch longer than one read, alternating shards.
	long := make([]storage.Entry, 0, 600)
	for i := range 300 {
		long = append(long,
			storage.Entry{Shard: 1, Payload: []byte("x" + strconv.Itoa(i))},
			storage.Entry{Shard: 2, Payload: []byte("y" + strconv.Itoa(i))})
	}
	require.NoError(t, b.PublishBatch(t.Context(), long))
	publish(t, b, 1, "end")
	c1.expect(t, append(seq("x", 0, 300), "end")...)
	c2.expect(t, seq("y", 0, 300)...)
}

// brokerBatchEmpty: an empty batch appends nothing and succeeds.
func brokerBatchEmpty(t *testing.T, open func(t *testing.T) storage.Broker) {
	b := open(t)
	require.NoError(t, b.Join(t.Context(), 1, "p"))
	c := startConsumer(t, b, 1, "p")
	require.NoError(t, b.PublishBatch(t.Context(), nil))
	require.NoError(t, b.PublishBatch(t.Context(), []storage.Entry{}))
	publish(t, b, 1, "only")
	c.expect(t, "only")
}

func brokerClose(t *testing.T, open func(t *testing.T) storage.Broker) {
	b := open(t)
	require.NoError(t, b.Join(t.Context(), 1, "p"))
	done := make(chan error, 2)
	for range 2 {
		go func() {
			done <- b.Consume(context.Background(), 1, "p", func(context.Context, []byte) {})
		}()
	}
	publish(t, b, 1, "x")
	require.NoError(t, b.Close())
	for range 2 {
		require.NoError(t, <-done, "Close ends Consume with nil")
	}
	require.NoError(t, b.Close(), "Close is idempotent")
	require.NoError(t, b.Consume(t.Context(), 1, "p", func(context.Context, []byte) {}))
	require.ErrorIs(t, b.Publish(t.Context(), 1, []byte("y")), storage.ErrUnavailable)
	require.ErrorIs(t, b.PublishBatch(t.Context(), []storage.Entry{{Shard: 1, Payload: []byte("y")}}), storage.ErrUnavailable)
	require.ErrorIs(t, b.PublishBatch(t.Context(), nil), storage.ErrUnavailable, "even an empty batch after Close")
	require.ErrorIs(t, b.Join(t.Context(), 1, "p"), storage.ErrUnavailable)
}
