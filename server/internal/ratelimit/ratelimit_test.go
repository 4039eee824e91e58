package ratelimit

import (
	"fmt"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestKeyedAllow(t *testing.T) {
	t.Parallel()
	type step struct {
		at       time.Duration // since t0
		key      string
		want     bool
		wantWait time.Duration
	}
	tests := []struct {
		name     string
		burst    int
		interval time.Duration
		steps    []step
	}{
		{name: "burst_then_refill", burst: 2, interval: 100 * time.Millisecond, steps: []step{
			{0, "d1", true, 0},
			{0, "d1", true, 0},
			{0, "d1", false, 100 * time.Millisecond},
			{40 * time.Millisecond, "d1", false, 60 * time.Millisecond},
			{100 * time.Millisecond, "d1", true, 0},
			{100 * time.Millisecond, "d1", false, 100 * time.Millisecond},
		}},
		{name: "keys_are_independent", burst: 1, interval: time.Second, steps: []step{
			{0, "d1", true, 0},
			{0, "d1", false, time.Second},
			{0, "d2", true, 0},
			{0, "d2", false, time.Second},
		}},
		{name: "refusals_spend_nothing", burst: 1, interval: time.Second, steps: []step{
			{0, "d1", true, 0},
			{500 * time.Millisecond, "d1", false, 500 * time.Millisecond},
			{900 * time.Millisecond, "d1", false, 100 * time.Millisecond},
			{time.Second, "d1", true, 0},
		}},
		{name: "disabled_by_zero_burst", burst: 0, interval: time.Second, steps: []step{
			{0, "d1", true, 0}, {0, "d1", true, 0}, {0, "d1", true, 0},
		}},
		{name: "disabled_by_zero_interval", burst: 1, interval: 0, steps: []step{
			{0, "d1", true, 0}, {0, "d1", true, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := New(tt.burst, tt.interval)
			for i, s := range tt.steps {
				ok, wait := k.Allow(s.key, t0.Add(s.at))
				require.Equal(t, s.want, ok, "step %d", i)
				require.Equal(t, s.wantWait, wait, "step %d", i)
			}
		})
	}
}

func TestKeyedCheckAndSpend(t *testing.T) {
	t.Parallel()
	k := New(2, time.Minute)
	ok, _ := k.Check("u", t0)
	require.True(t, ok)
	require.Zero(t, k.Len(), "Check creates no bucket")
	k.Spend("u", t0)
	ok, _ = k.Check("u", t0)
	require.True(t, ok)
	k.Spend("u", t0)
	ok, wait := k.Check("u", t0)
	require.False(t, ok)
	require.Equal(t, time.Minute, wait)
	// Spending past empty is a debt: concurrent failures that passed the
	// check all count.
	k.Spend("u", t0)
	ok, wait = k.Check("u", t0)
	require.False(t, ok)
	require.Equal(t, 2*time.Minute, wait)
	ok, _ = k.Check("u", t0.Add(2*time.Minute))
	require.True(t, ok)

	var off *Keyed
	off.Spend("u", t0)
	ok, _ = off.Check("u", t0)
	require.True(t, ok)
	require.Zero(t, off.Len())
}

// Idle keys are swept when new keys arrive, so memory follows the keys
// active in the last few windows, not every key ever seen.
func TestKeyedEvictsIdleKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		burst    int
		interval time.Duration
		idle     time.Duration // what New should pick
	}{
		{name: "twice_the_fill_time", burst: 10, interval: time.Minute, idle: 20 * time.Minute},
		{name: "at_least_a_minute", burst: 1000, interval: 5 * time.Millisecond, idle: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := New(tt.burst, tt.interval)
			require.Equal(t, tt.idle, k.idle)
			const n = 10_000
			for i := range n {
				k.Allow(fmt.Sprint("old", i), t0)
			}
			require.Equal(t, n, k.Len())
			// A key seen recently survives; the others go once every
			// shard has had an insert after the idle time.
			k.Allow("old0", t0.Add(tt.idle))
			later := t0.Add(tt.idle + time.Nanosecond)
			for i := range n {
				k.Allow(fmt.Sprint("new", i), later)
			}
			require.Equal(t, n+1, k.Len())
			for i := range numShards {
				require.LessOrEqual(t, len(k.shards[i].entries), 2*n/numShards, "shard %d", i)
			}
			ok, _ := k.Check("old0", later)
			require.True(t, ok)
		})
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		delay, want time.Duration
	}{
		{delay: 1500 * time.Millisecond, want: 1500 * time.Millisecond},
		{delay: 1234567 * time.Nanosecond, want: time.Millisecond},
		{delay: 0, want: time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.delay.String(), func(t *testing.T) {
			t.Parallel()
			err := Error("slow down", tt.delay)
			require.Equal(t, connect.CodeResourceExhausted, err.Code())
			require.Equal(t, "slow down", err.Message())
			require.Len(t, err.Details(), 1)
			msg, derr := connectproto.UnmarshalErrorDetail(err.Details()[0])
			require.NoError(t, derr)
			info, ok := msg.(*errdetails.RetryInfo)
			require.True(t, ok, "detail is %T", msg)
			require.Equal(t, tt.want, info.GetRetryDelay().AsDuration())
		})
	}
}

func BenchmarkKeyedAllow(b *testing.B) {
	k := New(1000, 5*time.Millisecond)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprint("device-", i)
	}
	now := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			k.Allow(keys[i%len(keys)], now)
			i++
		}
	})
}
