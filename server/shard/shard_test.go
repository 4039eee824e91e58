package shard

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOfIsStableAndBalanced(t *testing.T) {
	t.Parallel()
	const users, shards = 20000, 4
	counts := make([]int, shards)
	for i := range users {
		id := fmt.Sprintf("user-%d", i)
		s := Of(id, shards)
		require.Equal(t, s, Of(id, shards), "same answer every time")
		counts[s]++
	}
	for s, n := range counts {
		require.InDelta(t, users/shards, n, users/shards/10, "shard %d holds %d users", s, n)
	}
	require.Equal(t, 0, Of("anyone", 1))
	require.Equal(t, 0, Of("anyone", 0))
}

func TestGrowingMovesFewUsersAndOnlyToTheNewShard(t *testing.T) {
	t.Parallel()
	const users = 20000
	for _, n := range []int{1, 2, 3, 7} {
		moved := 0
		for i := range users {
			id := fmt.Sprintf("user-%d", i)
			before, after := Of(id, n), Of(id, n+1)
			if before != after {
				moved++
				require.Equal(t, n, after, "a moved user goes to the new shard")
			}
		}
		want := users / (n + 1)
		require.InDelta(t, want, moved, float64(want)/5, "growing %d→%d moved %d users", n, n+1, moved)
	}
}

func TestLayout(t *testing.T) {
	t.Parallel()
	require.NoError(t, Single().Validate())
	require.True(t, Single().Owns("u"))
	l := Layout{Shard: 1, Shards: 2, Addresses: []string{"http://a", "http://b"}}
	require.NoError(t, l.Validate())
	require.Equal(t, "http://b", l.Address(1))
	require.Empty(t, l.Address(2))
	require.Equal(t, l.Of("u") == 1, l.Owns("u"))
	require.ErrorContains(t, Layout{Shard: 2, Shards: 2}.Validate(), "outside")
	require.ErrorContains(t, Layout{Shards: 0}.Validate(), "at least 1")
	require.ErrorContains(t, Layout{Shards: 2, Addresses: []string{"x"}}.Validate(), "addresses")
}
