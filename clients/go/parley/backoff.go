package parley

import (
	"math/rand/v2"
	"time"
)

// backoff computes reconnect delays with exponential growth and full jitter
// (AWS Architecture Blog, "Exponential Backoff And Jitter"): attempt n waits a
// uniformly random duration in [0, min(max, base·2ⁿ)). Full jitter spreads a
// crowd of clients that lost the same server across the whole window instead
// of reconnecting in waves.
type backoff struct {
	base time.Duration
	max  time.Duration
}

// ceiling returns min(max, base·2ⁿ), the exclusive upper bound of attempt n's
// delay.
func (b backoff) ceiling(attempt int) time.Duration {
	if attempt < 0 {
		attempt = 0
	}
	if attempt >= 62 {
		return b.max
	}
	c := b.base << attempt
	if c <= 0 || c > b.max || c>>attempt != b.base {
		return b.max
	}
	return c
}

// delay returns attempt n's delay, drawn with rnd (rnd(n) is uniform in
// [0, n); rand.Int64N in production).
func (b backoff) delay(attempt int, rnd func(int64) int64) time.Duration {
	c := b.ceiling(attempt)
	if c <= 0 {
		return 0
	}
	return time.Duration(rnd(int64(c)))
}

func jitter(n int64) int64 { return rand.Int64N(n) }
