package scenario

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/parley-im/parley/loadtest/internal/stats"
	"github.com/parley-im/parley/loadtest/internal/worker"
)

// fleet is the run's workers: one in this process, or -procs child
// processes.
type fleet struct {
	runners []worker.Runner
	remotes []*worker.Remote
}

func newFleet(cfg Config) (*fleet, error) {
	if cfg.Procs <= 1 {
		return &fleet{runners: []worker.Runner{worker.New(cfg.Logger)}}, nil
	}
	f := &fleet{}
	for i := range cfg.Procs {
		r, err := worker.StartRemote(i, cfg.Exe, cfg.ExeArgs, cfg.WorkerStderr)
		if err != nil {
			f.kill()
			return nil, err
		}
		f.remotes = append(f.remotes, r)
		f.runners = append(f.runners, r)
	}
	return f, nil
}

func (f *fleet) size() int { return len(f.runners) }

// each runs fn for every worker concurrently and joins their errors.
func (f *fleet) each(ctx context.Context, fn func(ctx context.Context, i int, r worker.Runner) error) error {
	errs := make([]error, len(f.runners))
	var wg sync.WaitGroup
	for i, r := range f.runners {
		wg.Go(func() {
			if err := fn(ctx, i, r); err != nil {
				errs[i] = fmt.Errorf("worker %d: %w", i, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// close closes every worker (their devices, then their processes).
func (f *fleet) close(logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := f.each(ctx, func(ctx context.Context, _ int, r worker.Runner) error { return r.Close(ctx) }); err != nil {
		logger.Warn("closing workers", "err", err)
		f.kill()
	}
}

func (f *fleet) kill() {
	for _, r := range f.remotes {
		r.Kill()
	}
}

// progress sums the workers' counters.
func (f *fleet) progress(ctx context.Context) worker.Progress {
	var mu sync.Mutex
	var sum worker.Progress
	_ = f.each(ctx, func(ctx context.Context, _ int, r worker.Runner) error {
		p, err := r.Progress(ctx)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		sum.Sent += p.Sent
		sum.Acked += p.Acked
		sum.Failed += p.Failed
		sum.Delivered += p.Delivered
		sum.Online += p.Online
		sum.Synced += p.Synced
		sum.Idle += p.Idle
		sum.Dropped += p.Dropped
		if sum.DropError == "" {
			sum.DropError = p.DropError
		}
		sum.Disconnects += p.Disconnects
		if sum.DisconnectError == "" {
			sum.DisconnectError = p.DisconnectError
		}
		return nil
	})
	return sum
}

// collected is the workers' measurements merged.
type collected struct {
	deliver   *stats.Histogram
	ack       *stats.Histogram
	delivered int64
	// track: message index → recipients reached and the latest delivery.
	track map[int]worker.TrackEntry
}

func (f *fleet) collect(ctx context.Context) (collected, error) {
	c := collected{deliver: stats.NewHistogram(), ack: stats.NewHistogram(), track: map[int]worker.TrackEntry{}}
	var mu sync.Mutex
	err := f.each(ctx, func(ctx context.Context, _ int, r worker.Runner) error {
		res, err := r.Collect(ctx)
		if err != nil {
			return err
		}
		d, err1 := stats.Decode(res.Deliver)
		a, err2 := stats.Decode(res.Ack)
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		c.deliver.Merge(d)
		c.ack.Merge(a)
		c.delivered += res.Delivered
		for _, t := range res.Track {
			e := c.track[t.Index]
			e.Index = t.Index
			e.N += t.N
			e.Last = max(e.Last, t.Last)
			c.track[t.Index] = e
		}
		return nil
	})
	return c, err
}
