package server

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInflight(t *testing.T) {
	t.Parallel()
	q := newInflight(2)
	done := make(chan struct{})
	require.True(t, q.push(pendingSend{clientMsgID: "a"}, done))
	require.True(t, q.push(pendingSend{clientMsgID: "b"}, done))

	// Full: a third send waits until the oldest is taken.
	pushed := make(chan bool)
	go func() { pushed <- q.push(pendingSend{clientMsgID: "c"}, done) }()
	p, ok := q.pop()
	require.True(t, ok)
	require.Equal(t, "a", p.clientMsgID)
	require.True(t, <-pushed)

	// Full again: a waiting push gives up when the stream ends.
	go func() { pushed <- q.push(pendingSend{clientMsgID: "d"}, done) }()
	close(done)
	require.False(t, <-pushed)

	// Close lets the taker drain what is left, in order, then stop.
	q.close()
	for _, want := range []string{"b", "c"} {
		p, ok := q.pop()
		require.True(t, ok)
		require.Equal(t, want, p.clientMsgID)
	}
	_, ok = q.pop()
	require.False(t, ok)
	require.Zero(t, q.q.Cap(), "an empty queue holds no buffer")
}
