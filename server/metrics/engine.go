package metrics

import "github.com/prometheus/client_golang/prometheus"

// Engine is the commit pipeline, device acks, catch-up and repair.
type Engine struct {
	sent, duplicates, acks prometheus.Counter
	batch                  prometheus.Histogram
	commitFailures         prometheus.Counter
	catchups, gaps         prometheus.Counter
	repairs, rechecks      prometheus.Counter
}

func newEngine(r *registrar) *Engine {
	return &Engine{
		sent:       r.counter("messages", "sent_total", "Messages committed (new messages; retried duplicates are not counted)."),
		duplicates: r.counter("messages", "duplicates_total", "Sends that repeated a client_msg_id already committed, answered with the original message."),
		acks:       r.counter("messages", "acknowledged_total", "Acknowledgements received from devices (each moves a device cursor up to a seq)."),
		batch: r.histogram("engine", "commit_batch_messages",
			"Messages per commit transaction (group commit); up to engine.batch_size.", sizeBuckets),
		commitFailures: r.counter("engine", "commit_failures_total", "Commit transactions that failed (every send of the batch is answered with an error)."),
		catchups:       r.counter("engine", "catchups_total", "Catch-ups run for connecting devices."),
		gaps:           r.counter("engine", "catchup_gaps_total", "Gap frames sent: backlogs longer than engine.catchup_limit, paged through history by the client."),
		repairs:        r.counter("engine", "repairs_total", "Holes in a connection's live messages filled from the store (a live message skipped ahead)."),
		rechecks:       r.counter("engine", "rechecks_total", "Connections compared with the store in full because live frames may have been lost between processes."),
	}
}

// Committed records a commit of batch messages, of which sent were new
// and duplicates were retries; failed says the transaction failed.
func (e *Engine) Committed(batch, sent, duplicates int, failed bool) {
	if e == nil {
		return
	}
	e.batch.Observe(float64(batch))
	if failed {
		e.commitFailures.Inc()
		return
	}
	e.sent.Add(float64(sent))
	e.duplicates.Add(float64(duplicates))
}

// Acked records an acknowledgement from a device.
func (e *Engine) Acked() {
	if e == nil {
		return
	}
	e.acks.Inc()
}

// CatchUp records a catch-up.
func (e *Engine) CatchUp() {
	if e == nil {
		return
	}
	e.catchups.Inc()
}

// Gap records a Gap frame.
func (e *Engine) Gap() {
	if e == nil {
		return
	}
	e.gaps.Inc()
}

// Repair records a repair of a gap (gap) and/or a full recheck (recheck).
func (e *Engine) Repair(gap, recheck bool) {
	if e == nil {
		return
	}
	if gap {
		e.repairs.Inc()
	}
	if recheck {
		e.rechecks.Inc()
	}
}
