package stats_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/loadtest/internal/stats"
)

// near asserts got is within HDR's three significant digits of want.
func near(t *testing.T, want, got time.Duration) {
	t.Helper()
	require.InDelta(t, float64(want), float64(got), float64(want)/500+float64(time.Microsecond), "want %s got %s", want, got)
}

func TestPercentiles(t *testing.T) {
	t.Parallel()
	h := stats.NewHistogram()
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * 10 * time.Microsecond) // 10 µs … 100 ms
	}
	s := h.Summary()
	require.Equal(t, int64(10000), s.Count)
	near(t, 50*time.Millisecond, s.P50)
	near(t, 90*time.Millisecond, s.P90)
	near(t, 99*time.Millisecond, s.P99)
	near(t, 99900*time.Microsecond, s.P999)
	near(t, 100*time.Millisecond, s.Max)
	near(t, 10*time.Microsecond, s.Min)
}

func TestEmptyAndClamped(t *testing.T) {
	t.Parallel()
	h := stats.NewHistogram()
	require.Equal(t, stats.Summary{}, h.Summary())
	h.Record(-time.Second) // a clock step
	h.Record(time.Hour)
	s := h.Summary()
	require.Equal(t, int64(2), s.Count)
	require.Equal(t, int64(1), s.Clamped)
	near(t, 10*time.Minute, s.Max)
}

// Workers ship their histograms encoded; the merge must equal one
// histogram that saw every sample.
func TestMergeAcrossWorkers(t *testing.T) {
	t.Parallel()
	all := stats.NewHistogram()
	var shipped []stats.Encoded
	for w := range 3 {
		h := stats.NewHistogram()
		for i := range 1000 {
			d := time.Duration((w+1)*(i+1)) * time.Microsecond * 7
			h.Record(d)
			all.Record(d)
		}
		e, err := h.Encode()
		require.NoError(t, err)
		b, err := json.Marshal(e) // as it travels between processes
		require.NoError(t, err)
		var back stats.Encoded
		require.NoError(t, json.Unmarshal(b, &back))
		shipped = append(shipped, back)
	}
	merged, err := stats.MergeEncoded(shipped...)
	require.NoError(t, err)
	require.Equal(t, all.Summary(), merged.Summary())

	empty, err := stats.Decode(stats.Encoded{})
	require.NoError(t, err)
	require.Zero(t, empty.Count())
	_, err = stats.Decode(stats.Encoded{HDR: "not a histogram"})
	require.Error(t, err)
}

func TestConcurrentRecord(t *testing.T) {
	t.Parallel()
	h := stats.NewHistogram()
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 1000 {
				h.Record(time.Duration(i) * time.Microsecond)
			}
		}()
	}
	for range 4 {
		<-done
	}
	require.Equal(t, int64(4000), h.Count())
}
