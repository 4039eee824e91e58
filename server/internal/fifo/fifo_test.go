package fifo

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestQueue(t *testing.T) {
	t.Parallel()
	q := New[int](3, 4)
	require.Equal(t, 1, q.TryPush(1, 3))
	require.Equal(t, 2, q.TryPush(2, 3))
	require.Zero(t, q.TryPush(3, 2), "a lower limit refuses earlier")
	require.Equal(t, 3, q.TryPush(3, 10), "the limit never exceeds Max")
	require.Zero(t, q.TryPush(4, 10))
	<-q.Ready()
	for want := 1; want <= 3; want++ {
		v, ok := q.Pop()
		require.True(t, ok)
		require.Equal(t, want, v)
	}
	_, ok := q.Pop()
	require.False(t, ok)
	<-q.Space()
	require.LessOrEqual(t, q.Cap(), 4, "an emptied queue keeps at most keep")

	big := New[int](100, 4)
	for i := range 10 {
		big.TryPush(i, 100)
	}
	for range 10 {
		big.Pop()
	}
	require.Zero(t, big.Cap(), "a larger buffer is given back once empty")
}
