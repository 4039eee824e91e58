package scenario

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/loadtest/internal/worker"
)

// A schedule is split over the workers that own its senders: counts add
// up, rates are shared by sender, tracked indexes are contiguous and each
// message's scheduled time can be recovered for fan-out latency.
func TestSplitSend(t *testing.T) {
	t.Parallel()
	r := &run{
		cfg:   Config{Window: 8, Size: 64, SendTimeout: time.Second},
		fleet: &fleet{runners: make([]worker.Runner, 3)},
		plan:  &worker.Plan{Devices: []worker.DeviceSpec{{Worker: 0}, {Worker: 1}, {Worker: 1}, {Worker: 0}, {Worker: 1}}},
	}
	senders := []worker.Sender{{Device: 0, Conv: "a"}, {Device: 1, Conv: "b"}, {Device: 2, Conv: "c"}, {Device: 3, Conv: "d"}, {Device: 4, Conv: "e"}}
	start := time.Unix(1000, 0)
	p := r.splitSend(start, senders, 100, 1001, 10, "tag")

	require.Len(t, p.args, 3)
	w0, w1, w2 := p.args[0], p.args[1], p.args[2]
	require.Zero(t, w2.Count, "worker 2 owns no sender")
	require.Equal(t, 1001, w0.Count+w1.Count)
	require.Equal(t, 400, w0.Count)
	require.InDelta(t, 40, w0.Rate, 1e-9)
	require.InDelta(t, 60, w1.Rate, 1e-9)
	require.Equal(t, 10, w0.IndexBase)
	require.Equal(t, 410, w1.IndexBase)
	require.Equal(t, []worker.Sender{senders[0], senders[3]}, w0.Senders)
	require.Equal(t, "tag-w1", w1.Tag)

	at, ok := p.scheduled(10 + 5)
	require.True(t, ok)
	require.Equal(t, start.Add(5*time.Second/40), at)
	at, ok = p.scheduled(410 + 6)
	require.True(t, ok)
	require.Equal(t, start.Add(6*time.Second/60), at)
	_, ok = p.scheduled(10 + 1001)
	require.False(t, ok)
}
