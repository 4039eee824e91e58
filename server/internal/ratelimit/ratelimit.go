// Package ratelimit holds token buckets per key (a device, a username, a
// client address) with bounded memory, and the ResourceExhausted error
// that tells a client when to retry.
package ratelimit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/protobuf/types/known/durationpb"
)

// numShards splits the keys so that concurrent callers rarely share a
// lock.
const numShards = 32

// minIdle is the shortest time an idle key is kept, so that a fast bucket
// is not swept and recreated over and over.
const minIdle = time.Minute

// Keyed is a token bucket per key: each key may spend burst events at
// once, refilled at one event per interval. A key idle longer than twice
// the time its bucket takes to fill (at least a minute) is forgotten,
// which loses nothing: its bucket was full. Keys are swept lazily, a shard
// at a time, when a new key is inserted; there is no background goroutine.
// The zero value and nil are not usable; a nil *Keyed from New allows
// everything. Safe for concurrent use.
type Keyed struct {
	limit rate.Limit
	burst int
	idle  time.Duration
	seed  maphash.Seed

	shards [numShards]shard
}

type shard struct {
	mu        sync.Mutex
	entries   map[string]*entry
	lastSweep time.Time
}

type entry struct {
	lim      *rate.Limiter
	lastSeen time.Time
}

// New returns a limiter allowing burst events at once per key, then one
// per interval. burst or interval 0 (or less) disables it: New returns
// nil, whose methods allow every event.
func New(burst int, interval time.Duration) *Keyed {
	if burst <= 0 || interval <= 0 {
		return nil
	}
	fill := time.Duration(burst) * interval
	if fill/time.Duration(burst) != interval { // overflow
		fill = time.Duration(math.MaxInt64 / 2)
	}
	k := &Keyed{
		limit: rate.Every(interval),
		burst: burst,
		idle:  max(2*fill, minIdle),
		seed:  maphash.MakeSeed(),
	}
	for i := range k.shards {
		k.shards[i].entries = make(map[string]*entry)
	}
	return k
}

// Allow spends one event of key at now. When the bucket is empty it
// spends nothing and returns false with the time until an event is
// allowed.
func (k *Keyed) Allow(key string, now time.Time) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	sh := &k.shards[maphash.String(k.seed, key)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.get(k, key, now)
	if e.lim.AllowN(now, 1) {
		return true, 0
	}
	return false, k.wait(e.lim, now)
}

// Check reports, without spending, whether key may spend an event at now,
// and if not, when it may. A bucket that does not exist is full, so Check
// creates none.
func (k *Keyed) Check(key string, now time.Time) (bool, time.Duration) {
	if k == nil {
		return true, 0
	}
	sh := &k.shards[maphash.String(k.seed, key)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[key]
	if !ok || e.lim.TokensAt(now) >= 1 {
		return true, 0
	}
	return false, k.wait(e.lim, now)
}

// Spend takes one event of key at now even when its bucket is empty (it
// then goes into debt, delaying the next allowed event): for events, such
// as failed logins, that are counted after they happened.
func (k *Keyed) Spend(key string, now time.Time) {
	if k == nil {
		return
	}
	sh := &k.shards[maphash.String(k.seed, key)%numShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.get(k, key, now)
	// A reservation is honoured even when it has to wait: the debt.
	e.lim.ReserveN(now, 1)
}

// Len is the number of keys held.
func (k *Keyed) Len() int {
	if k == nil {
		return 0
	}
	n := 0
	for i := range k.shards {
		sh := &k.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// wait is how long until lim has a whole token again.
func (k *Keyed) wait(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(missing / float64(k.limit) * float64(time.Second)))
}

// get returns key's entry, creating it (and first sweeping the shard when
// a sweep is due). Called with sh.mu held.
func (sh *shard) get(k *Keyed, key string, now time.Time) *entry {
	e, ok := sh.entries[key]
	if !ok {
		if now.Sub(sh.lastSweep) >= k.idle {
			for key, old := range sh.entries {
				if now.Sub(old.lastSeen) > k.idle {
					delete(sh.entries, key)
				}
			}
			sh.lastSweep = now
		}
		e = &entry{lim: rate.NewLimiter(k.limit, k.burst)}
		sh.entries[key] = e
	}
	if now.After(e.lastSeen) {
		e.lastSeen = now
	}
	return e
}

// Error is a ResourceExhausted error with message msg and a
// google.rpc.RetryInfo detail saying to retry after delay (at least a
// millisecond, rounded up to one).
func Error(msg string, delay time.Duration) *connect.Error {
	err := connect.NewError(connect.CodeResourceExhausted, msg)
	delay = max(delay.Round(time.Millisecond), time.Millisecond)
	if d, derr := connectproto.NewErrorDetail(&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)}); derr == nil {
		err = err.WithDetail(d)
	}
	return err
}
