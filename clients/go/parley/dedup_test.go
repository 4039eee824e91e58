package parley

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDedup(t *testing.T) {
	t.Parallel()
	type delivery struct {
		conv string
		seq  uint64
	}
	tests := []struct {
		name  string
		in    []delivery
		admit []delivery
	}{
		{
			name:  "in_order",
			in:    []delivery{{"a", 1}, {"a", 2}, {"a", 3}},
			admit: []delivery{{"a", 1}, {"a", 2}, {"a", 3}},
		},
		{
			name:  "redelivered_after_reconnect",
			in:    []delivery{{"a", 1}, {"a", 2}, {"a", 3}, {"a", 2}, {"a", 3}, {"a", 4}},
			admit: []delivery{{"a", 1}, {"a", 2}, {"a", 3}, {"a", 4}},
		},
		{
			name:  "same_seq_twice",
			in:    []delivery{{"a", 5}, {"a", 5}},
			admit: []delivery{{"a", 5}},
		},
		{
			name:  "conversations_are_independent",
			in:    []delivery{{"a", 3}, {"b", 1}, {"a", 1}, {"b", 2}, {"b", 1}},
			admit: []delivery{{"a", 3}, {"b", 1}, {"b", 2}},
		},
		{
			name:  "starts_anywhere",
			in:    []delivery{{"a", 41}, {"a", 42}},
			admit: []delivery{{"a", 41}, {"a", 42}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDedup()
			var got []delivery
			for _, in := range tt.in {
				if d.fresh(in.conv, in.seq) {
					d.admit(in.conv, in.seq)
					got = append(got, in)
				}
			}
			require.Equal(t, tt.admit, got)
		})
	}
}

func TestDedupFreshDoesNotAdmit(t *testing.T) {
	t.Parallel()
	d := newDedup()
	require.True(t, d.fresh("a", 1))
	require.True(t, d.fresh("a", 1), "an item not queued is accepted again")
	d.admit("a", 2)
	d.admit("a", 1) // never lowers the mark
	require.False(t, d.fresh("a", 2))
	require.True(t, d.fresh("a", 3))
}

func TestDedupReset(t *testing.T) {
	t.Parallel()
	d := newDedup()
	d.admit("a", 10)
	require.False(t, d.fresh("a", 1))
	d.reset()
	require.True(t, d.fresh("a", 1))
}
