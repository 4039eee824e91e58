package scenario

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/parley-im/parley/loadtest/internal/stats"
	"github.com/parley-im/parley/loadtest/internal/worker"
)

// catchupSetup is the shape of a reconnect: M devices, each with a direct
// conversation with each of C senders.
type catchupSetup struct {
	devices []int // the devices that go offline
	senders []worker.Sender
	convs   []worker.ConvSpec
	perConv int // messages per conversation
}

// catchupConvs registers m devices and c senders and creates their m×c
// direct conversations; each conversation will get perConv messages.
func (r *run) catchupConvs(ctx context.Context, m, c, perConv int, role string) (catchupSetup, error) {
	base := len(r.devices)
	if _, err := r.register(ctx, m, role+"d"); err != nil {
		return catchupSetup{}, err
	}
	if _, err := r.register(ctx, c, role+"s"); err != nil {
		return catchupSetup{}, err
	}
	r.progress.phase("create conversations", nil)
	s := catchupSetup{perConv: perConv}
	for d := range m {
		dev := base + d
		s.devices = append(s.devices, dev)
		for k := range c {
			snd := base + m + k
			id, err := r.setupAPI[snd].CreateDirect(ctx, r.devices[dev].Creds.UserID)
			if err != nil {
				return catchupSetup{}, fmt.Errorf("create direct conversation: %w", err)
			}
			s.convs = append(s.convs, worker.ConvSpec{ID: id, Label: fmt.Sprintf("dm %s%d/%d", role, d, k), Members: []int{snd, dev}})
			s.senders = append(s.senders, worker.Sender{Device: snd, Conv: id})
		}
	}
	return s, nil
}

// catchupRun is a measured reconnect.
type catchupRun struct {
	missed    int   // messages each device missed
	total     int64 // all devices together
	catchup   stats.Summary
	sync      stats.Summary
	slowest   time.Duration
	sendRate  float64
	sendFails int64
}

// catchUp takes the devices offline, sends while they are away (as fast as
// the window allows), then reconnects them all at once and measures until
// each has received everything.
func (r *run) catchUp(ctx context.Context, s catchupSetup, tag string) (catchupRun, error) {
	if err := r.disconnect(ctx, s.devices); err != nil {
		return catchupRun{}, err
	}
	count := s.perConv * len(s.senders)
	r.progress.phase(fmt.Sprintf("send %d while offline", count), nil)
	sendStart := time.Now()
	sres, err := r.send(ctx, r.splitSend(time.Now(), s.senders, 0, count, 0, r.id+"-"+tag))
	if err != nil {
		return catchupRun{}, err
	}
	sendWall := time.Since(sendStart)
	// The senders' own deliveries are not what is measured.
	if _, err := r.fleet.collect(ctx); err != nil {
		return catchupRun{}, err
	}
	until := map[string]uint64{}
	for _, c := range s.convs {
		until[c.ID] = sres.LastSeq[c.ID]
	}
	at := time.Now().Add(startDelay)
	res, err := r.connect(ctx, fmt.Sprintf("reconnect %d devices", len(s.devices)), s.devices, at, until)
	if err != nil {
		return catchupRun{}, fmt.Errorf("reconnect: %w (%d seqs missing)", err, res.Missing)
	}
	catchup, sync := stats.NewHistogram(), stats.NewHistogram()
	for _, d := range res.CatchupTimes {
		catchup.Record(d)
	}
	for _, d := range res.SyncTimes {
		sync.Record(d)
	}
	missed := count / max(len(s.devices), 1)
	return catchupRun{
		missed:    missed,
		total:     int64(count),
		catchup:   catchup.Summary(),
		sync:      sync.Summary(),
		slowest:   slices.Max(append(res.CatchupTimes, 0)),
		sendRate:  float64(sres.Acked) / sendWall.Seconds(),
		sendFails: sres.Failed,
	}, nil
}

// reconnect has M devices miss K messages each and measures their
// catch-up when they come back at once.
func (r *run) reconnect(ctx context.Context) error {
	c := r.cfg.Convs
	if c <= 0 {
		// One conversation per 1,000 missed messages: the server's default
		// catch-up bound per conversation, beyond which it sends a gap.
		c = max((r.cfg.Messages+999)/1000, 1)
	}
	perConv := (r.cfg.Messages + c - 1) / c
	s, err := r.catchupConvs(ctx, r.cfg.Devices, c, perConv, "r")
	if err != nil {
		return err
	}
	if err := r.start(ctx, s.convs, 0, func(i int) int { return i }); err != nil {
		return err
	}
	if _, err := r.connect(ctx, "connect", nil, time.Time{}, nil); err != nil {
		return err
	}
	cr, err := r.catchUp(ctx, s, "r")
	if err != nil {
		return err
	}
	r.res.DurationSec = cr.slowest.Seconds()
	r.res.MsgsPerSec = float64(cr.total) / cr.slowest.Seconds()
	r.res.SetHeadline(fmt.Sprintf("per-device catch-up time: reconnect → all %d missed messages received (over %d conversations); msgs/s = all devices' missed messages / slowest catch-up", cr.missed, c), cr.catchup)
	r.res.SetLatency("catchup", cr.catchup)
	r.res.SetLatency("sync_complete", cr.sync)
	r.note("%d devices each missed %d messages in %d conversations; sent while they were offline at %.0f msgs/s (%d failed)",
		len(s.devices), cr.missed, c, cr.sendRate, cr.sendFails)
	r.note("all %d devices caught up %s after reconnecting", len(s.devices), cr.slowest.Round(time.Millisecond))
	r.serverNow(ctx)
	_, err = r.check(ctx)
	return err
}
