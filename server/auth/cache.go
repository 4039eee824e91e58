package auth

import (
	"sync"
	"time"
)

// deviceCache remembers, per device, whether its session is live, so that
// authenticating a call does not read the store every time. It is bounded
// and safe for concurrent use.
//
// Revocation is permanent, so a "revoked" entry is always right; a "live"
// entry may be stale for up to ttl when another node revoked the device.
// Revoked entries are never overwritten by live ones: a lookup that read
// the store just before a local revocation must not resurrect the session
// when it stores its (now stale) answer afterwards.
type deviceCache struct {
	ttl time.Duration // 0 disables the cache
	max int
	now func() time.Time

	mu      sync.RWMutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	userID  string
	revoked bool
	expires time.Time
}

func newDeviceCache(ttl time.Duration, maxEntries int, now func() time.Time) *deviceCache {
	return &deviceCache{
		ttl:     ttl,
		max:     max(maxEntries, 1),
		now:     now,
		entries: make(map[string]cacheEntry),
	}
}

// get returns the unexpired entry for a device.
func (c *deviceCache) get(deviceID string) (cacheEntry, bool) {
	if c.ttl <= 0 {
		return cacheEntry{}, false
	}
	c.mu.RLock()
	e, ok := c.entries[deviceID]
	c.mu.RUnlock()
	if !ok || !c.now().Before(e.expires) {
		return cacheEntry{}, false
	}
	return e, true
}

// putLive records a live device, unless the device is known to be revoked.
func (c *deviceCache) putLive(deviceID, userID string) {
	c.put(deviceID, cacheEntry{userID: userID}, false)
}

// putRevoked records that a device is revoked, replacing any live entry.
func (c *deviceCache) putRevoked(deviceID string) {
	c.put(deviceID, cacheEntry{revoked: true}, true)
}

func (c *deviceCache) put(deviceID string, e cacheEntry, overwriteRevoked bool) {
	if c.ttl <= 0 {
		return
	}
	now := c.now()
	e.expires = now.Add(c.ttl)
	c.mu.Lock()
	defer c.mu.Unlock()
	old, exists := c.entries[deviceID]
	if exists && old.revoked && !overwriteRevoked && now.Before(old.expires) {
		return
	}
	if !exists && len(c.entries) >= c.max {
		c.evictLocked(now)
	}
	c.entries[deviceID] = e
}

// evictLocked makes room: first it drops expired entries, then, if the
// cache is still full, arbitrary ones (map iteration order) down to 90% of
// the bound, so the O(n) sweep runs once per max/10 inserts rather than on
// every insert of a full cache. Dropping a live entry costs one store read;
// dropping a revoked one costs nothing once the revocation is durable.
func (c *deviceCache) evictLocked(now time.Time) {
	for id, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, id)
		}
	}
	target := c.max - max(c.max/10, 1)
	for id := range c.entries {
		if len(c.entries) <= target {
			break
		}
		delete(c.entries, id)
	}
}

// len is the number of entries, expired ones included (for tests).
func (c *deviceCache) len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}
