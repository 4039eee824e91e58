package metrics

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// AnalyticsStats are an analytics event writer's counters since it was
// made (clickhouse.EventWriterStats, copied by main).
type AnalyticsStats struct {
	Written, Dropped, FailedFlushes uint64
	Buffered                        int
}

// WatchAnalytics registers the analytics event writer's metrics on reg,
// read from stats at every scrape (it must be quick):
//
//	parley_analytics_events_written_total   events stored
//	parley_analytics_events_dropped_total   events lost (buffer full, refused)
//	parley_analytics_flush_failures_total   failed batch writes (each retry)
//	parley_analytics_events_buffered        events held in memory now
//
// A rising dropped count means the analytics store is down or too slow
// for the event rate; nothing else is affected.
func WatchAnalytics(reg prometheus.Registerer, stats func() AnalyticsStats) error {
	const subsystem = "analytics"
	return errors.Join(
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "events_written_total",
			Help: "Analytics events stored (a retried batch counts once).",
		}, func() float64 { return float64(stats().Written) })),
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "events_dropped_total",
			Help: "Analytics events lost: recorded while the buffer was full, invalid, refused by the store, or left at shutdown.",
		}, func() float64 { return float64(stats().Dropped) })),
		reg.Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "flush_failures_total",
			Help: "Failed analytics batch writes (each retry counts).",
		}, func() float64 { return float64(stats().FailedFlushes) })),
		reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: namespace, Subsystem: subsystem, Name: "events_buffered",
			Help: "Analytics events held in memory, waiting to be written.",
		}, func() float64 { return float64(stats().Buffered) })),
	)
}
