package scenario

import (
	"context"
	"fmt"
	"time"

	"github.com/parley-im/parley/loadtest/internal/stats"
	"github.com/parley-im/parley/loadtest/internal/worker"
)

// makeGroup registers size users; the first creates a group of all of
// them. The first senders members are the returned senders.
func (r *run) makeGroup(ctx context.Context, size, senders int, role string) (worker.ConvSpec, []worker.Sender, error) {
	base := len(r.devices)
	specs, err := r.register(ctx, size, role)
	if err != nil {
		return worker.ConvSpec{}, nil, err
	}
	r.progress.phase("create group", nil)
	var others []string
	members := []int{base}
	for i, s := range specs[1:] {
		others = append(others, s.Creds.UserID)
		members = append(members, base+1+i)
	}
	id, err := r.setupAPI[base].CreateGroup(ctx, "loadtest "+r.id, others)
	if err != nil {
		return worker.ConvSpec{}, nil, fmt.Errorf("create group of %d: %w", size, err)
	}
	conv := worker.ConvSpec{ID: id, Label: fmt.Sprintf("group %s (%d members)", role, size), Members: members}
	var ss []worker.Sender
	for i := range min(senders, size) {
		ss = append(ss, worker.Sender{Device: base + i, Conv: id})
	}
	return conv, ss, nil
}

// group has S members of a G-member group send while all are online, and
// measures how long each message takes to reach every member.
func (r *run) group(ctx context.Context) error {
	conv, senders, err := r.makeGroup(ctx, r.cfg.GroupSize, r.cfg.Senders, "g")
	if err != nil {
		return err
	}
	count := r.cfg.Messages
	if count == 0 {
		count = max(int(r.cfg.Rate*r.cfg.Duration.Seconds()), 1)
	}
	if err := r.start(ctx, []worker.ConvSpec{conv}, count, func(i int) int { return i }); err != nil {
		return err
	}
	if _, err := r.connect(ctx, "connect", nil, time.Time{}, nil); err != nil {
		return err
	}
	r.progress.phase(fmt.Sprintf("group %.0f msgs/s", r.cfg.Rate), nil)
	fan, err := r.fanOut(ctx, senders, r.cfg.Rate, count, 0, len(conv.Members)-1, "g")
	if err != nil {
		return err
	}
	r.res.Rate = r.cfg.Rate
	r.res.MsgsPerSec = fan.deliveriesPerSec
	r.res.DurationSec = fan.wall.Seconds()
	r.res.SetHeadline(fmt.Sprintf("fan-out latency: scheduled send → the last of %d recipients has it; msgs/s counts deliveries", len(conv.Members)-1), fan.fanout)
	r.res.SetLatency("fanout", fan.fanout)
	r.res.SetLatency("deliver", fan.deliver)
	r.res.SetLatency("ack", fan.ack)
	r.note("%d messages to %d members: %.0f messages/s sent, %.0f deliveries/s", count, len(conv.Members), float64(count)/fan.wall.Seconds(), fan.deliveriesPerSec)
	if fan.incomplete > 0 {
		r.note("%d messages did not reach every member before the drain timeout (fan-out latency leaves them out; the checker counts them)", fan.incomplete)
	}
	r.serverNow(ctx)
	_, err = r.check(ctx)
	return err
}

// fanOutRun is a measured group send.
type fanOutRun struct {
	fanout, deliver, ack stats.Summary
	deliveriesPerSec     float64
	wall                 time.Duration
	incomplete           int
}

// fanOut sends count tracked messages (indexes from indexBase) at rate
// and measures, per message, when the last of recipients
// devices received it.
func (r *run) fanOut(ctx context.Context, senders []worker.Sender, rate float64, count, indexBase, recipients int, tag string) (fanOutRun, error) {
	start := time.Now().Add(startDelay)
	sp := r.splitSend(start, senders, rate, count, indexBase, r.id+"-"+tag)
	sres, err := r.send(ctx, sp)
	if err != nil {
		return fanOutRun{}, err
	}
	if _, err := r.drain(ctx, sres.LastSeq, r.cfg.DrainTimeout); err != nil {
		return fanOutRun{}, err
	}
	wall := time.Since(start)
	col, err := r.fleet.collect(ctx)
	if err != nil {
		return fanOutRun{}, err
	}
	fan := stats.NewHistogram()
	incomplete := 0
	for i := indexBase; i < indexBase+count; i++ {
		e, ok := col.track[i]
		at, scheduled := sp.scheduled(i)
		if !ok || int(e.N) < recipients || !scheduled {
			incomplete++
			continue
		}
		fan.Record(time.Unix(0, e.Last).Sub(at))
	}
	ds := col.deliver.Summary()
	return fanOutRun{
		fanout:           fan.Summary(),
		deliver:          ds,
		ack:              col.ack.Summary(),
		deliveriesPerSec: float64(ds.Count) / wall.Seconds(),
		wall:             wall,
		incomplete:       incomplete,
	}, nil
}
