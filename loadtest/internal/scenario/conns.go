package scenario

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/parley-im/parley/loadtest/internal/worker"
)

// settle is how long the server gets after the last stream opened before
// its memory is read.
const settle = 2 * time.Second

// conns holds N idle authenticated streams and measures what each costs the
// server.
func (r *run) conns(ctx context.Context) error {
	n := r.cfg.Conns
	if _, err := r.register(ctx, n, "c"); err != nil {
		return err
	}
	if err := r.start(ctx, nil, 0, func(i int) int { return i }); err != nil {
		return err
	}
	before := r.sample(ctx, "before (accounts registered, no streams)", 0)
	r.res.ServerSamples = append(r.res.ServerSamples, before)

	r.progress.phase("open streams", nil)
	perWorker := max(r.cfg.Concurrency/r.fleet.size(), 1)
	var opened, failed int
	var elapsed time.Duration
	var limit, firstErr string
	var mu sync.Mutex
	err := r.fleet.each(ctx, func(ctx context.Context, _ int, w worker.Runner) error {
		res, err := w.Idle(ctx, worker.IdleArgs{Concurrency: perWorker, Timeout: r.cfg.ConnectTimeout, MaxFailures: 10})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		opened += res.Opened
		failed += res.Failed
		elapsed = max(elapsed, res.Elapsed)
		if limit == "" {
			limit = res.Limit
		}
		if firstErr == "" {
			firstErr = res.FirstError
		}
		return nil
	})
	if err != nil {
		return err
	}
	r.res.Conns = int64(opened)
	r.res.ConnectRate = float64(opened) / elapsed.Seconds()
	r.res.DurationSec = elapsed.Seconds()
	if opened < n {
		why := limit
		if why == "" {
			why = firstErr
		}
		r.res.LimitHit = fmt.Sprintf("stopped at %d of %d streams (%d failed): %s", opened, n, failed, why)
		r.explainLimit(ctx)
	}

	if err := sleep(ctx, settle); err != nil {
		return err
	}
	connected := r.sample(ctx, "all streams open", int64(opened))
	r.res.ServerSamples = append(r.res.ServerSamples, connected)
	r.res.ServerRSSBytes, r.res.ServerGoroutines = connected.RSSBytes, connected.Goroutines
	if opened > 0 && before.RSSBytes > 0 && connected.RSSBytes > 0 {
		r.res.BytesPerConn = float64(connected.RSSBytes-before.RSSBytes) / float64(opened)
	}
	if opened > 0 && before.HeapInuseBytes > 0 && connected.HeapInuseBytes > 0 {
		r.res.HeapPerConn = float64(connected.HeapInuseBytes-before.HeapInuseBytes) / float64(opened)
		r.res.StackPerConn = float64(connected.StackInuseBytes-before.StackInuseBytes) / float64(opened)
	}
	if opened > 0 && before.Goroutines > 0 && connected.Goroutines > 0 {
		r.res.GoroutinesPerConn = float64(connected.Goroutines-before.Goroutines) / float64(opened)
	}

	r.progress.phase(fmt.Sprintf("hold %s", r.cfg.Duration), nil)
	if err := sleep(ctx, r.cfg.Duration); err != nil {
		return err
	}
	p := r.fleet.progress(ctx)
	held := r.sample(ctx, fmt.Sprintf("after holding %s", r.cfg.Duration), p.Idle)
	r.res.ServerSamples = append(r.res.ServerSamples, held)
	if p.Dropped > 0 {
		r.note("%d streams ended while held; the first: %s", p.Dropped, p.DropError)
	}
	r.note("bytes per stream = (RSS with all streams open − RSS before) / streams. RSS includes garbage not yet collected and the heap's growth headroom (GOGC); heap in use and stacks are the runtime's own counts")
	_, err = r.check(ctx)
	return err
}

// explainLimit adds what the server's process shows about limits, when it
// runs on this machine.
func (r *run) explainLimit(ctx context.Context) {
	if len(r.cfg.Probe.PIDs) == 0 {
		return
	}
	s, _ := r.cfg.Probe.Sample(ctx) // a metrics endpoint may not answer at the limit; /proc does
	if s.OpenFiles < 0 {
		return
	}
	if len(r.cfg.Probe.PIDs) > 1 {
		r.note("server open files at the stop: %d over %d processes, at most %d in one (limit %d each)", s.OpenFiles, len(r.cfg.Probe.PIDs), s.MostOpenFiles, s.FileLimit)
	} else {
		r.note("server open files at the stop: %d (its limit %d)", s.OpenFiles, s.FileLimit)
	}
	// The limit is per process: compare the fullest one with it.
	if s.FileLimit > 0 && s.MostOpenFiles >= s.FileLimit-64 {
		r.res.LimitHit += fmt.Sprintf("; a server process is at its open files limit (%d of %d)", s.MostOpenFiles, s.FileLimit)
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
