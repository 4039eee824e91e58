package worker

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestText(t *testing.T) {
	t.Parallel()
	at := time.Unix(1700000000, 123456789)
	s := encodeText(42, at, 64)
	require.Len(t, s, 64)
	i, ns, ok := decodeText(s)
	require.True(t, ok)
	require.Equal(t, 42, i)
	require.Equal(t, at.UnixNano(), ns)

	short := encodeText(7, at, 0)
	_, _, ok = decodeText(short)
	require.True(t, ok)

	for _, other := range []string{"", "hello", "lt|x|1|", "lt|1|", "lt|1|2"} {
		_, _, ok := decodeText(other)
		require.False(t, ok, other)
	}
}
