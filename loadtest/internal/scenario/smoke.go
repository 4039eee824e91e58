package scenario

import (
	"context"
	"fmt"
	"time"
)

// smoke is a short mixed run: a few pairs at a modest rate, a small group,
// and one device catching up after missing messages. It exists to show
// that nothing is lost; main exits non-zero unless the checker agrees.
func (r *run) smoke(ctx context.Context) error {
	pairConvs, pairSenders, err := r.pairs(ctx, r.cfg.Pairs, "p")
	if err != nil {
		return err
	}
	groupBase := len(r.devices)
	group, groupSenders, err := r.makeGroup(ctx, r.cfg.GroupSize, r.cfg.Senders, "g")
	if err != nil {
		return err
	}
	perConv := (r.cfg.Messages + 1) / 2
	cs, err := r.catchupConvs(ctx, r.cfg.Devices, 2, perConv, "r")
	if err != nil {
		return err
	}
	convs := append(append(pairConvs, group), cs.convs...)
	groupCount := max(int(r.cfg.Rate/5*r.cfg.Duration.Seconds()), 1)
	assign := func(i int) int {
		if i < groupBase {
			return i / 2 // pairs stay together
		}
		return i
	}
	if err := r.start(ctx, convs, groupCount, assign); err != nil {
		return err
	}
	if _, err := r.connect(ctx, "connect", nil, time.Time{}, nil); err != nil {
		return err
	}
	measured := time.Now()

	// 1:1 traffic.
	st, err := r.step(ctx, pairSenders, r.cfg.Rate, r.cfg.Duration, 0)
	if err != nil {
		return err
	}
	r.res.Steps = append(r.res.Steps, st.result)
	// Group traffic, at a fifth of the rate.
	r.progress.phase("group", nil)
	fan, err := r.fanOut(ctx, groupSenders, r.cfg.Rate/5, groupCount, 0, len(group.Members)-1, "g")
	if err != nil {
		return err
	}
	// One device catching up.
	cr, err := r.catchUp(ctx, cs, "r")
	if err != nil {
		return err
	}
	r.res.DurationSec = time.Since(measured).Seconds()

	r.res.Rate = r.cfg.Rate
	r.res.MsgsPerSec = st.result.MsgsPerSec
	r.res.SetHeadline("send→deliver latency of the 1:1 part; msgs/s of the 1:1 part", st.deliver)
	r.res.SetLatency("deliver", st.deliver)
	r.res.SetLatency("group_fanout", fan.fanout)
	r.res.SetLatency("group_deliver", fan.deliver)
	r.res.SetLatency("catchup", cr.catchup)
	r.note("1:1: %d pairs at %.0f msgs/s for %s (%s)", r.cfg.Pairs, r.cfg.Rate, r.cfg.Duration, st.result.Verdict)
	r.note("group: %d members, %d senders, %d messages, fan-out p99 %.1f ms", len(group.Members), len(groupSenders), groupCount, float64(fan.fanout.P99.Microseconds())/1000)
	r.note("reconnect: %d device(s) missed %d messages each, caught up in %s", len(cs.devices), cr.missed, cr.slowest.Round(time.Millisecond))
	r.serverNow(ctx)
	rep, err := r.check(ctx)
	if err != nil {
		return err
	}
	r.res.Pass = rep.OK() && rep.Counts.Failed == 0 && fan.incomplete == 0
	if !r.res.Pass {
		r.res.LimitHit = fmt.Sprintf("smoke failed: %d lost, %d violations, %d failed sends, %d group messages incomplete",
			rep.Counts.Lost, rep.ViolationCount, rep.Counts.Failed, fan.incomplete)
	}
	return nil
}
