package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// EntryKind is what a consumed stream entry carried.
type EntryKind int

// The kinds of consumed entries.
const (
	// EntryDeliveries: deliveries for devices here.
	EntryDeliveries EntryKind = iota
	// EntryOwn: published by this process (already delivered; skipped).
	EntryOwn
	// EntryRecheck: a publisher's publish failed; every device rechecks.
	EntryRecheck
	// EntryCloseDevice: a revoked device's stream is to be closed.
	EntryCloseDevice
	// EntryLost: the broker lost the consumer group (restarted without
	// persistence); every device rechecks.
	EntryLost
	// EntryInvalid: an entry that could not be decoded (dropped).
	EntryInvalid
	numEntryKinds
)

var entryKindNames = [numEntryKinds]string{"deliveries", "own", "recheck", "close_device", "lost", "invalid"}

// PresenceOp is a presence store operation.
type PresenceOp int

// The presence operations whose failures are counted.
const (
	PresenceSetOnline PresenceOp = iota
	PresenceSetOffline
	PresenceOnline
	numPresenceOps
)

var presenceOpNames = [numPresenceOps]string{"set_online", "set_offline", "online"}

// Route is the cluster's routing through the broker (Redis Streams) and
// its presence records.
type Route struct {
	publishDuration prometheus.Histogram
	publishFailures prometheus.Counter
	publishSkipped  prometheus.Counter
	published       prometheus.Counter
	consumed        [numEntryKinds]prometheus.Counter
	presenceErrors  [numPresenceOps]prometheus.Counter
	refreshFailures prometheus.Counter
}

func newRoute(r *registrar) *Route {
	rt := &Route{
		publishDuration: r.histogram("route", "publish_duration_seconds",
			"Round trips publishing a batch of entries to the broker (one per commit), failed ones included.", ioBuckets),
		publishFailures: r.counter("route", "publish_failures_total",
			"Batches the broker refused or timed out on; devices on other processes get those messages when they recheck."),
		publishSkipped: r.counter("route", "publish_skipped_total",
			"Batches not published because the broker is failing (until a recheck entry gets through)."),
		published: r.counter("route", "entries_published_total", "Entries published to shard streams."),
		refreshFailures: r.counter("presence", "refresh_failures_total",
			"Device presence records that could not be refreshed (the broker was unreachable)."),
	}
	consumed := r.counterVec("route", "entries_consumed_total", "Entries read from this process's shard stream, by kind.", "kind")
	for i, name := range entryKindNames {
		rt.consumed[i] = consumed.WithLabelValues(name)
	}
	errs := r.counterVec("presence", "errors_total", "Presence store operations that failed (users then count as offline), by op.", "op")
	for i, name := range presenceOpNames {
		rt.presenceErrors[i] = errs.WithLabelValues(name)
	}
	return rt
}

// Published records a publish of entries that took d; failed says the
// broker refused it or it timed out.
func (r *Route) Published(entries int, d time.Duration, failed bool) {
	if r == nil {
		return
	}
	r.publishDuration.Observe(d.Seconds())
	if failed {
		r.publishFailures.Inc()
		return
	}
	r.published.Add(float64(entries))
}

// Skipped records a batch not published while the broker is failing.
func (r *Route) Skipped() {
	if r == nil {
		return
	}
	r.publishSkipped.Inc()
}

// Consumed records an entry read from the shard stream.
func (r *Route) Consumed(k EntryKind) {
	if r == nil {
		return
	}
	r.consumed[k].Inc()
}

// PresenceFailed records a failed presence operation.
func (r *Route) PresenceFailed(op PresenceOp) {
	if r == nil {
		return
	}
	r.presenceErrors[op].Inc()
}

// RefreshFailed records n presence records that could not be refreshed.
func (r *Route) RefreshFailed(n int) {
	if r == nil || n <= 0 {
		return
	}
	r.refreshFailures.Add(float64(n))
}
