package scenario

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"
)

// progress prints a status line while a run goes: rewritten in place every
// second on a terminal, or a new line every five seconds otherwise.
type progress struct {
	w     io.Writer
	tty   bool
	fleet *fleet
	start time.Time

	mu     sync.Mutex
	label  string
	extra  func() string
	last   time.Time
	lastN  int64
	cancel context.CancelFunc
	done   chan struct{}
}

func newProgress(w io.Writer, tty bool, f *fleet) *progress {
	p := &progress{w: w, tty: tty, fleet: f, start: time.Now(), done: make(chan struct{})}
	if w == nil {
		close(p.done)
		return p
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go p.loop(ctx)
	return p
}

// phase names what the run is doing; extra, if not nil, adds to the line.
func (p *progress) phase(label string, extra func() string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.label, p.extra = label, extra
}

func (p *progress) loop(ctx context.Context) {
	defer close(p.done)
	every := time.Second
	if !p.tty {
		every = 5 * time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if p.tty {
				fmt.Fprint(p.w, "\r\x1b[K")
			}
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, every)
		line := p.line(pctx)
		cancel()
		if p.tty {
			fmt.Fprintf(p.w, "\r\x1b[K%s", line)
		} else {
			fmt.Fprintln(p.w, line)
		}
	}
}

func (p *progress) line(ctx context.Context) string {
	s := p.fleet.progress(ctx)
	now := time.Now()
	p.mu.Lock()
	label, extra := p.label, p.extra
	rate := 0.0
	if !p.last.IsZero() {
		rate = float64(s.Delivered-p.lastN) / now.Sub(p.last).Seconds()
	}
	p.last, p.lastN = now, s.Delivered
	p.mu.Unlock()
	line := fmt.Sprintf("[%6.1fs] %-22s", now.Sub(p.start).Seconds(), label)
	if extra != nil {
		line += " " + extra()
	}
	if s.Online > 0 {
		line += fmt.Sprintf(" online %d (synced %d)", s.Online, s.Synced)
	}
	if s.Idle > 0 || s.Dropped > 0 {
		line += fmt.Sprintf(" streams %d (dropped %d)", s.Idle, s.Dropped)
	}
	if s.Sent > 0 {
		line += fmt.Sprintf(" sent %d acked %d failed %d", s.Sent, s.Acked, s.Failed)
	}
	if s.Delivered > 0 {
		line += fmt.Sprintf(" delivered %d (%.0f/s)", s.Delivered, rate)
	}
	return line
}

// stop ends the line (idempotent).
func (p *progress) stop() {
	if p.cancel != nil {
		p.cancel()
	}
	<-p.done
}
