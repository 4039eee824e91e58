package hub

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/metrics"
)

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg)
	require.NoError(t, err)
	h := New(DefaultConfig())
	h.SetMetrics(m.Hub)

	c, _ := h.Register("u1", "d1")
	require.True(t, c.Push(t.Context(), msgFrame("c", 1)), "a backlog message")
	require.True(t, c.Release(t.Context()))
	live := msgFrame("c", 2)
	live.GetMessage().CreatedAt = timestamppb.New(time.Now().Add(-time.Second))
	h.Deliver(Delivery{Frame: live, Users: []string{"u1"}})
	h.Deliver(Delivery{Frame: &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Pong{Pong: &parleyv1.Pong{}}}, Users: []string{"u1"}})
	h.Deliver(Delivery{Frame: msgFrame("c", 3), Users: []string{"nobody"}})

	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_hub_devices Device streams registered in the hub (one per device).
# TYPE parley_hub_devices gauge
parley_hub_devices 1
# HELP parley_messages_delivered_total Message frames handed to device queues on this process: live (fan-out, routed from other processes) or backlog (catch-up and repair from the store).
# TYPE parley_messages_delivered_total counter
parley_messages_delivered_total{path="backlog"} 1
parley_messages_delivered_total{path="live"} 1
`), "parley_hub_devices", "parley_messages_delivered_total"))
	// Three frames went into the queue (two messages and a pong), with
	// depths 1, 2, 3; one message was handed over, a second late.
	fams, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range fams {
		switch f.GetName() {
		case "parley_hub_queue_depth_frames":
			require.Equal(t, uint64(3), f.GetMetric()[0].GetHistogram().GetSampleCount())
			require.InDelta(t, 6, f.GetMetric()[0].GetHistogram().GetSampleSum(), 0)
		case "parley_messages_delivery_latency_seconds":
			require.Equal(t, uint64(1), f.GetMetric()[0].GetHistogram().GetSampleCount(), "only messages handed to a device count")
			require.GreaterOrEqual(t, f.GetMetric()[0].GetHistogram().GetSampleSum(), 1.0)
		}
	}
	require.True(t, h.Unregister(c))
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP parley_hub_devices Device streams registered in the hub (one per device).
# TYPE parley_hub_devices gauge
parley_hub_devices 0
`), "parley_hub_devices"))
}

// BenchmarkDeliverMetrics is the cost of metrics on the fan-out's path:
// one message delivery to one connected device (queue depth, delivered
// count, send→deliver latency), without and with metrics.
//
//	go test ./server/hub -run '^$' -bench DeliverMetrics -benchmem
func BenchmarkDeliverMetrics(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run(map[bool]string{false: "metrics=off", true: "metrics=on"}[on], func(b *testing.B) {
			h := New(Config{QueueLen: 1 << 20, MaxPending: 1})
			if on {
				m, err := metrics.New(prometheus.NewRegistry())
				require.NoError(b, err)
				h.SetMetrics(m.Hub)
			}
			c, _ := h.Register("u1", "d1")
			c.Release(b.Context())
			created := timestamppb.Now()
			users := []string{"u1"}
			b.ReportAllocs()
			seq := uint64(0)
			for b.Loop() {
				seq++
				f := msgFrame("c", seq)
				f.GetMessage().CreatedAt = created
				h.Route(b.Context(), []Delivery{{Frame: f, Users: users}})
				c.queue.Pop()
			}
		})
	}
}
