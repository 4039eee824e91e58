package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-im/parley/loadtest/internal/report"
	"github.com/parley-im/parley/loadtest/internal/stats"
	"github.com/parley-im/parley/loadtest/internal/worker"
)

// startDelay lets every worker receive a schedule before it begins.
const startDelay = 300 * time.Millisecond

// pairs registers P pairs of users and creates their direct conversations.
// Device 2k and 2k+1 form pair k; the returned senders alternate between
// them (message j goes from senders[j % len]).
func (r *run) pairs(ctx context.Context, p int, role string) ([]worker.ConvSpec, []worker.Sender, error) {
	base := len(r.devices)
	if _, err := r.register(ctx, 2*p, role); err != nil {
		return nil, nil, err
	}
	r.progress.phase("create conversations", nil)
	convs := make([]worker.ConvSpec, p)
	var senders []worker.Sender
	for k := range p {
		a, b := base+2*k, base+2*k+1
		id, err := r.setupAPI[a].CreateDirect(ctx, r.devices[b].Creds.UserID)
		if err != nil {
			return nil, nil, fmt.Errorf("create direct conversation: %w", err)
		}
		convs[k] = worker.ConvSpec{ID: id, Label: fmt.Sprintf("dm %s%d", role, k), Members: []int{a, b}}
		senders = append(senders, worker.Sender{Device: a, Conv: id}, worker.Sender{Device: b, Conv: id})
	}
	return convs, senders, nil
}

// pairWorker keeps both devices of a pair on one worker, pairs spread
// round-robin.
func pairWorker(base int) func(i int) int {
	return func(i int) int {
		if i < base {
			return i
		}
		return (i - base) / 2
	}
}

// p2p runs pairs exchanging direct messages on an open-loop schedule, at
// one rate or stepping up to the highest the server sustains.
func (r *run) p2p(ctx context.Context) error {
	convs, senders, err := r.pairs(ctx, r.cfg.Pairs, "p")
	if err != nil {
		return err
	}
	if err := r.start(ctx, convs, 0, pairWorker(0)); err != nil {
		return err
	}
	if _, err := r.connect(ctx, "connect", nil, time.Time{}, nil); err != nil {
		return err
	}
	measured := time.Now()
	if !r.cfg.FindMax {
		st, err := r.step(ctx, senders, r.cfg.Rate, r.cfg.Duration, 0)
		if err != nil {
			return err
		}
		r.res.Rate = r.cfg.Rate
		r.setStep(st, "send→deliver latency of 1:1 messages, from the scheduled send time; msgs/s delivered")
		if !st.result.OK {
			r.res.LimitHit = st.result.Verdict
		}
	} else if err := r.findMax(ctx, senders); err != nil {
		return err
	}
	r.res.DurationSec = time.Since(measured).Seconds()
	r.serverNow(ctx)
	_, err = r.check(ctx)
	return err
}

// stepRun is one measured rate step.
type stepRun struct {
	result  report.Step
	deliver stats.Summary
	ack     stats.Summary
}

// step sends at rate for d, waits for the deliveries, and judges the step
// against the p99 bound.
func (r *run) step(ctx context.Context, senders []worker.Sender, rate float64, d time.Duration, n int) (stepRun, error) {
	r.progress.phase(fmt.Sprintf("p2p %.0f msgs/s", rate), nil)
	start := time.Now().Add(startDelay)
	count := max(int(rate*d.Seconds()), 1)
	sp := r.splitSend(start, senders, rate, count, 0, fmt.Sprintf("%s-s%d", r.id, n))
	sres, err := r.send(ctx, sp)
	if err != nil {
		return stepRun{}, err
	}
	// Deliveries may trail the last send; give them what is left of the
	// step's time, at least 2 s.
	dres, err := r.drain(ctx, sres.LastSeq, max(2*time.Second, d/2))
	if err != nil {
		return stepRun{}, err
	}
	wall := time.Since(start)
	col, err := r.fleet.collect(ctx)
	if err != nil {
		return stepRun{}, err
	}
	ds, as := col.deliver.Summary(), col.ack.Summary()
	st := report.Step{
		Rate:       rate,
		MsgsPerSec: float64(ds.Count) / wall.Seconds(),
		Sent:       sres.Sent,
		Delivered:  ds.Count,
		Failed:     sres.Failed,
		P50Ms:      report.Ms(ds.P50),
		P90Ms:      report.Ms(ds.P90),
		P99Ms:      report.Ms(ds.P99),
		P999Ms:     report.Ms(ds.P999),
	}
	switch {
	case sres.Failed > 0:
		st.Verdict = fmt.Sprintf("%d sends failed (%v; first: %s)", sres.Failed, sres.Errors, sres.FirstError)
	case dres.TimedOut:
		st.Verdict = fmt.Sprintf("deliveries fell behind: %d still missing %s after the last send", dres.Missing, dres.Waited.Round(time.Millisecond))
	case ds.P99 > r.cfg.P99Bound:
		st.Verdict = fmt.Sprintf("p99 %.1f ms > %s", report.Ms(ds.P99), r.cfg.P99Bound)
	case st.MsgsPerSec < 0.9*rate:
		st.Verdict = fmt.Sprintf("achieved %.0f msgs/s, under 90%% of the target", st.MsgsPerSec)
	default:
		st.OK = true
		st.Verdict = fmt.Sprintf("ok (p99 ≤ %s)", r.cfg.P99Bound)
	}
	if sres.Behind > r.cfg.P99Bound {
		st.Verdict += fmt.Sprintf("; the generator's schedule fell %s behind", sres.Behind.Round(time.Millisecond))
	}
	r.cfg.Logger.Info("step", "rate", rate, "achieved", st.MsgsPerSec, "p99_ms", st.P99Ms, "verdict", st.Verdict)
	return stepRun{result: st, deliver: ds, ack: as}, nil
}

// findMax raises the rate by StepFactor per step until a step fails, then
// measures half the highest sustained rate.
func (r *run) findMax(ctx context.Context, senders []worker.Sender) error {
	rate := r.cfg.Rate
	var best *stepRun
	var failed *stepRun
	for n := range r.cfg.MaxSteps {
		st, err := r.step(ctx, senders, rate, r.cfg.Step, n)
		if err != nil {
			return err
		}
		r.res.Steps = append(r.res.Steps, st.result)
		if !st.result.OK {
			failed = &st
			break
		}
		best = &st
		rate *= r.cfg.StepFactor
	}
	switch {
	case best == nil:
		r.res.LimitHit = fmt.Sprintf("the first step (%.0f msgs/s) already failed: %s; start lower with -rate", r.cfg.Rate, failed.result.Verdict)
		r.setStep(*failed, "send→deliver latency at the first (failed) step")
		return nil
	case failed == nil:
		r.res.LimitHit = fmt.Sprintf("-max-steps %d reached without failing; the server sustains more than %.0f msgs/s", r.cfg.MaxSteps, best.result.Rate)
	default:
		r.res.LimitHit = fmt.Sprintf("%.0f msgs/s failed: %s", failed.result.Rate, failed.result.Verdict)
	}
	r.res.MaxRate = best.result.Rate
	r.res.Rate = best.result.Rate
	r.setStep(*best, "send→deliver latency at the highest sustained rate, from the scheduled send time")
	half, err := r.step(ctx, senders, best.result.Rate/2, r.cfg.Step, len(r.res.Steps)+1)
	if err != nil {
		return err
	}
	half.result.HalfMax = true
	r.res.Steps = append(r.res.Steps, half.result)
	r.res.SetLatency("deliver_at_half_max", half.deliver)
	return nil
}

// setStep makes a step the result's headline.
func (r *run) setStep(st stepRun, what string) {
	r.res.MsgsPerSec = st.result.MsgsPerSec
	r.res.SetHeadline(what, st.deliver)
	r.res.SetLatency("deliver", st.deliver)
	r.res.SetLatency("ack", st.ack)
}
