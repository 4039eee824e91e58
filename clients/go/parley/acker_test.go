package parley

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAckerCoalesces(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		handed map[string][]uint64
		want   map[string]uint64
	}{
		{name: "nothing", want: nil},
		{name: "highest_per_conversation", handed: map[string][]uint64{"a": {1, 2, 3}, "b": {7}}, want: map[string]uint64{"a": 3, "b": 7}},
		{name: "never_lower", handed: map[string][]uint64{"a": {5, 4}}, want: map[string]uint64{"a": 5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := newAcker(1000)
			for conv, seqs := range tt.handed {
				for _, seq := range seqs {
					a.handed(0, conv, seq)
				}
			}
			require.Equal(t, tt.want, a.take())
			require.Nil(t, a.take(), "take clears")
		})
	}
}

func TestAckerBatchSignalsFlush(t *testing.T) {
	t.Parallel()
	a := newAcker(3)
	a.handed(0, "a", 1)
	a.handed(0, "a", 2)
	require.Empty(t, a.flush)
	a.handed(0, "b", 1)
	require.Len(t, a.flush, 1)
	// Further batches while a flush is already signalled do not block.
	for seq := range uint64(10) {
		a.handed(0, "c", seq+1)
	}
	require.Len(t, a.flush, 1)
	require.Equal(t, map[string]uint64{"a": 2, "b": 1, "c": 10}, a.take())
}

func TestAckerRestoreKeepsHigher(t *testing.T) {
	t.Parallel()
	a := newAcker(100)
	a.handed(0, "a", 3)
	a.handed(0, "b", 1)
	failed := a.take()
	a.handed(0, "a", 5) // arrived while the failed flush was in flight
	a.restore(0, failed)
	require.Equal(t, map[string]uint64{"a": 5, "b": 1}, a.take())
}

func TestAckerEpochReset(t *testing.T) {
	t.Parallel()
	a := newAcker(100)
	a.handed(0, "a", 9)
	a.reset(1)
	require.Nil(t, a.take(), "acks of the old epoch are dropped")
	a.handed(0, "a", 10) // handed from the old epoch after the reset
	require.Nil(t, a.take())
	a.restore(0, map[string]uint64{"a": 9})
	require.Nil(t, a.take())
	a.handed(1, "a", 2)
	require.Equal(t, map[string]uint64{"a": 2}, a.take())
}
