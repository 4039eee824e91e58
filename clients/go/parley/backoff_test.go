package parley

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBackoffCeiling(t *testing.T) {
	t.Parallel()
	b := backoff{base: 100 * time.Millisecond, max: 10 * time.Second}
	tests := []struct {
		name    string
		attempt int
		want    time.Duration
	}{
		{name: "negative_is_first", attempt: -1, want: 100 * time.Millisecond},
		{name: "first", attempt: 0, want: 100 * time.Millisecond},
		{name: "doubles", attempt: 1, want: 200 * time.Millisecond},
		{name: "doubles_again", attempt: 6, want: 6400 * time.Millisecond},
		{name: "capped", attempt: 7, want: 10 * time.Second},
		{name: "capped_far_out", attempt: 40, want: 10 * time.Second},
		{name: "no_overflow", attempt: 63, want: 10 * time.Second},
		{name: "huge", attempt: 1 << 30, want: 10 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, b.ceiling(tt.attempt))
		})
	}
}

func TestBackoffDelayFullJitter(t *testing.T) {
	t.Parallel()
	b := backoff{base: 50 * time.Millisecond, max: time.Second}
	lowest := func(int64) int64 { return 0 }
	highest := func(n int64) int64 { return n - 1 }
	for attempt := range 12 {
		ceiling := b.ceiling(attempt)
		require.Equal(t, time.Duration(0), b.delay(attempt, lowest), "attempt %d", attempt)
		require.Equal(t, ceiling-1, b.delay(attempt, highest), "attempt %d", attempt)
		for range 200 {
			d := b.delay(attempt, jitter)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.Less(t, d, ceiling)
			require.LessOrEqual(t, d, b.max)
		}
	}
}

func TestBackoffDefaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		opts      []SessionOption
		base, max time.Duration
	}{
		{name: "defaults", base: 100 * time.Millisecond, max: 10 * time.Second},
		{name: "custom", opts: []SessionOption{WithBackoff(time.Second, time.Minute)}, base: time.Second, max: time.Minute},
		{name: "non_positive_keeps_default", opts: []SessionOption{WithBackoff(0, -1)}, base: 100 * time.Millisecond, max: 10 * time.Second},
		{name: "max_below_base_is_raised", opts: []SessionOption{WithBackoff(time.Minute, time.Second)}, base: time.Minute, max: time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := newSessionConfig(tt.opts)
			require.Equal(t, tt.base, cfg.backoff.base)
			require.Equal(t, tt.max, cfg.backoff.max)
		})
	}
}
