package auth

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDeviceCache(t *testing.T) {
	t.Parallel()
	const ttl = 30 * time.Second
	tests := []struct {
		name string
		// run acts on the cache and returns what get("d") should report.
		run       func(c *deviceCache, clock *fakeClock)
		wantFound bool
		want      cacheEntry
	}{
		{
			name:      "miss",
			run:       func(*deviceCache, *fakeClock) {},
			wantFound: false,
		},
		{
			name:      "live_hit",
			run:       func(c *deviceCache, _ *fakeClock) { c.putLive("d", "u") },
			wantFound: true,
			want:      cacheEntry{userID: "u"},
		},
		{
			name: "live_expires",
			run: func(c *deviceCache, clock *fakeClock) {
				c.putLive("d", "u")
				clock.Advance(ttl)
			},
			wantFound: false,
		},
		{
			name: "live_valid_until_ttl",
			run: func(c *deviceCache, clock *fakeClock) {
				c.putLive("d", "u")
				clock.Advance(ttl - time.Nanosecond)
			},
			wantFound: true,
			want:      cacheEntry{userID: "u"},
		},
		{
			name: "revoked_replaces_live",
			run: func(c *deviceCache, _ *fakeClock) {
				c.putLive("d", "u")
				c.putRevoked("d")
			},
			wantFound: true,
			want:      cacheEntry{revoked: true},
		},
		{
			// A lookup that read the store before a local revocation must
			// not resurrect the session when it caches its answer after.
			name: "live_does_not_replace_revoked",
			run: func(c *deviceCache, _ *fakeClock) {
				c.putRevoked("d")
				c.putLive("d", "u")
			},
			wantFound: true,
			want:      cacheEntry{revoked: true},
		},
		{
			name: "live_replaces_expired_revoked",
			run: func(c *deviceCache, clock *fakeClock) {
				c.putRevoked("d")
				clock.Advance(ttl)
				c.putLive("d", "u")
			},
			wantFound: true,
			want:      cacheEntry{userID: "u"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clock := newFakeClock()
			c := newDeviceCache(ttl, 10, clock.Now)
			tt.run(c, clock)
			got, ok := c.get("d")
			require.Equal(t, tt.wantFound, ok)
			if ok {
				got.expires = time.Time{}
				require.Equal(t, tt.want, got)
			}
		})
	}
}

func TestDeviceCacheDisabled(t *testing.T) {
	t.Parallel()
	c := newDeviceCache(0, 10, newFakeClock().Now)
	c.putLive("a", "u")
	c.putRevoked("b")
	_, ok := c.get("a")
	require.False(t, ok)
	_, ok = c.get("b")
	require.False(t, ok)
	require.Zero(t, c.len())
}

func TestDeviceCacheBounded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		max     int
		inserts int
	}{
		{name: "one", max: 1, inserts: 5},
		{name: "ten", max: 10, inserts: 1000},
		{name: "thousand", max: 1000, inserts: 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newDeviceCache(time.Minute, tt.max, newFakeClock().Now)
			for i := range tt.inserts {
				c.putLive(fmt.Sprint("d", i), "u")
				require.LessOrEqual(t, c.len(), tt.max)
			}
			_, ok := c.get(fmt.Sprint("d", tt.inserts-1))
			require.True(t, ok, "the newest entry survives eviction")
		})
	}
}

func TestDeviceCacheEvictsExpiredFirst(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	c := newDeviceCache(time.Minute, 10, clock.Now)
	for i := range 5 {
		c.putLive(fmt.Sprint("old", i), "u")
	}
	clock.Advance(time.Minute)
	for i := range 5 {
		c.putLive(fmt.Sprint("new", i), "u")
	}
	c.putLive("one_more", "u") // full: the sweep drops the 5 expired ones
	require.Equal(t, 6, c.len())
	for i := range 5 {
		_, ok := c.get(fmt.Sprint("new", i))
		require.True(t, ok)
	}
}

func TestDeviceCacheConcurrent(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	c := newDeviceCache(time.Minute, 50, clock.Now)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				id := fmt.Sprint("d", (g*500+i)%100)
				switch i % 3 {
				case 0:
					c.putLive(id, "u")
				case 1:
					c.putRevoked(id)
				default:
					c.get(id)
				}
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, c.len(), 50)
}
