package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Archive is the message archiver's progress, recorded by package
// archive: what reached the archive, what failed, and how far behind the
// primary store it is.
type Archive struct {
	archived   prometheus.Counter
	failures   prometheus.Counter
	batch      prometheus.Histogram
	lagEntries prometheus.Gauge
	lagSeconds prometheus.Gauge
	leader     prometheus.Gauge
	trimmed    prometheus.Counter
	backfilled prometheus.Counter
}

func newArchive(r *registrar) *Archive {
	return &Archive{
		archived: r.counter("archive", "messages_total",
			"Message states written to the archive (a recall or a replay after a failure counts again)."),
		failures: r.counter("archive", "batch_failures_total",
			"Archive batches that failed (store or archive unreachable, slow or erroring); the batch is retried with backoff."),
		batch: r.histogram("archive", "batch_duration_seconds",
			"Time to archive one batch: read the outbox, load the messages, write them, ack.", ioBuckets),
		lagEntries: r.gauge("archive", "outbox_entries",
			"Changes committed in the primary store and not yet archived (outbox rows), as last measured by the lease holder."),
		lagSeconds: r.gauge("archive", "outbox_oldest_age_seconds",
			"Age of the oldest change not yet archived; 0 when the outbox is empty."),
		leader: r.gauge("archive", "leader",
			"1 while this process holds the archiver lease and archives, else 0."),
		trimmed: r.counter("archive", "trimmed_messages_total",
			"Messages that left the primary store's window for the archive (hot_window)."),
		backfilled: r.counter("archive", "backfilled_messages_total",
			"Messages from before the archive was enabled, queued for it by the backfill."),
	}
}

// Archived records a batch of n messages written and acked in d.
func (a *Archive) Archived(n int, d time.Duration) {
	if a == nil {
		return
	}
	a.archived.Add(float64(n))
	a.batch.Observe(d.Seconds())
}

// Trimmed records n messages moved out of the store's window.
func (a *Archive) Trimmed(n int) {
	if a == nil {
		return
	}
	a.trimmed.Add(float64(n))
}

// Backfilled records n messages queued by the backfill.
func (a *Archive) Backfilled(n int) {
	if a == nil {
		return
	}
	a.backfilled.Add(float64(n))
}

// BatchFailed records a failed batch.
func (a *Archive) BatchFailed() {
	if a == nil {
		return
	}
	a.failures.Inc()
}

// Lag records the outbox's size and its oldest entry's age.
func (a *Archive) Lag(entries int, oldest time.Duration) {
	if a == nil {
		return
	}
	a.lagEntries.Set(float64(entries))
	a.lagSeconds.Set(oldest.Seconds())
}

// Leader records whether this process holds the archiver lease.
func (a *Archive) Leader(held bool) {
	if a == nil {
		return
	}
	v := 0.0
	if held {
		v = 1
	}
	a.leader.Set(v)
}
