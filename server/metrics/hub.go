package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Hub is the devices connected to this process, their outbound queues and
// what is handed to them.
type Hub struct {
	devices    prometheus.Gauge
	queueDepth prometheus.Histogram
	live       prometheus.Counter
	backlog    prometheus.Counter
	latency    prometheus.Histogram
}

func newHub(r *registrar) *Hub {
	delivered := r.counterVec("messages", "delivered_total",
		"Message frames handed to device queues on this process: live (fan-out, routed from other processes) or backlog (catch-up and repair from the store).", "path")
	return &Hub{
		devices: r.gauge("hub", "devices", "Device streams registered in the hub (one per device)."),
		queueDepth: r.histogram("hub", "queue_depth_frames",
			"Frames in a connection's outbound queue right after each enqueue: how close devices are to the queue limit (hub.queue_len), beyond which they are dropped as slow consumers.", sizeBuckets),
		live:    delivered.WithLabelValues("live"),
		backlog: delivered.WithLabelValues("backlog"),
		latency: r.histogram("messages", "delivery_latency_seconds",
			"Time from a message's arrival at the server (its created_at, on the sender's process) to its hand-off to the queues of the recipients' devices on this process; once per message per process.", latencyBuckets),
	}
}

// DeviceAdded records a device registered in the hub.
func (h *Hub) DeviceAdded() {
	if h == nil {
		return
	}
	h.devices.Inc()
}

// DeviceRemoved records a device unregistered from the hub.
func (h *Hub) DeviceRemoved() {
	if h == nil {
		return
	}
	h.devices.Dec()
}

// Enqueued records a frame put in a connection's queue, which then held
// depth frames; message says whether it is a Message frame, and live
// whether it came from the fan-out rather than the store.
func (h *Hub) Enqueued(depth int, message, live bool) {
	if h == nil {
		return
	}
	h.queueDepth.Observe(float64(depth))
	switch {
	case !message:
	case live:
		h.live.Inc()
	default:
		h.backlog.Inc()
	}
}

// Handed records that a message created at created was handed to the
// devices here at now.
func (h *Hub) Handed(created, now time.Time) {
	if h == nil {
		return
	}
	h.latency.Observe(now.Sub(created).Seconds())
}
