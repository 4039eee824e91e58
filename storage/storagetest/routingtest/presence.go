package routingtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// NewPresence returns a fresh, empty presence store for one test; the
// caller's cleanup releases it.
type NewPresence func(t *testing.T) storage.PresenceStore

// RunPresence runs the storage.PresenceStore conformance suite; subtests
// run in parallel.
func RunPresence(t *testing.T, newPresence NewPresence) {
	tests := []struct {
		name string
		fn   func(t *testing.T, p storage.PresenceStore)
	}{
		{"set_online_and_offline", presenceOnlineOffline},
		{"late_offline_from_old_node_is_ignored", presenceLateOffline},
		{"expiry_and_refresh", presenceExpiry},
		{"online_many_users", presenceMany},
		{"invalid_ttl", func(t *testing.T, p storage.PresenceStore) {
			require.Error(t, p.SetOnline(t.Context(), "u", "d", "n", 0))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newPresence(t))
		})
	}
}

func presenceOnlineOffline(t *testing.T, p storage.PresenceStore) {
	ctx := t.Context()
	require.NoError(t, p.SetOnline(ctx, "alice", "phone", "node1", time.Minute))
	require.NoError(t, p.SetOnline(ctx, "alice", "laptop", "node2", time.Minute))
	got, err := p.Online(ctx, []string{"alice", "bob"})
	require.NoError(t, err)
	require.Equal(t, map[string]bool{"alice": true, "bob": false}, got)

	require.NoError(t, p.SetOffline(ctx, "alice", "phone", "node1"))
	got, err = p.Online(ctx, []string{"alice"})
	require.NoError(t, err)
	require.True(t, got["alice"], "the laptop is still online")

	require.NoError(t, p.SetOffline(ctx, "alice", "laptop", "node2"))
	require.NoError(t, p.SetOffline(ctx, "alice", "laptop", "node2"), "offline twice is fine")
	got, err = p.Online(ctx, []string{"alice"})
	require.NoError(t, err)
	require.False(t, got["alice"])
}

func presenceLateOffline(t *testing.T, p storage.PresenceStore) {
	ctx := t.Context()
	require.NoError(t, p.SetOnline(ctx, "u", "phone", "old", time.Minute))
	require.NoError(t, p.SetOnline(ctx, "u", "phone", "new", time.Minute))
	require.NoError(t, p.SetOffline(ctx, "u", "phone", "old"))
	got, err := p.Online(ctx, []string{"u"})
	require.NoError(t, err)
	require.True(t, got["u"], "the device moved to node new")
}

func presenceExpiry(t *testing.T, p storage.PresenceStore) {
	ctx := t.Context()
	require.NoError(t, p.SetOnline(ctx, "u", "phone", "n", 300*time.Millisecond))
	require.NoError(t, p.SetOnline(ctx, "v", "phone", "n", 300*time.Millisecond))
	// A refresh with a long ttl keeps v online however long this test
	// takes; u's short ttl runs out by itself.
	require.NoError(t, p.SetOnline(ctx, "v", "phone", "n", time.Hour))
	require.Eventually(t, func() bool {
		got, err := p.Online(ctx, []string{"u", "v"})
		return err == nil && !got["u"] && got["v"]
	}, waitTimeout, 20*time.Millisecond)
}

func presenceMany(t *testing.T, p storage.PresenceStore) {
	ctx := t.Context()
	ids := make([]string, 0, 501)
	want := map[string]bool{}
	for i := range 500 {
		id := "user" + strconv.Itoa(i)
		ids = append(ids, id)
		want[id] = i%3 == 0
		if i%3 == 0 {
			require.NoError(t, p.SetOnline(ctx, id, "d", "n", time.Minute))
		}
	}
	ids = append(ids, ids[0]) // duplicates are answered once
	got, err := p.Online(ctx, ids)
	require.NoError(t, err)
	require.Equal(t, want, got)

	got, err = p.Online(ctx, nil)
	require.NoError(t, err)
	require.Empty(t, got)
}
