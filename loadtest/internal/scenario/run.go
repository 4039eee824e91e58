// Package scenario is the load generator's coordinator: each scenario signs
// its devices up, creates their conversations, hands the plan to the
// workers and drives them through the scenario's phases, then merges what
// they measured and what the delivery checker found into a report.Result.
package scenario

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parley-im/parley/loadtest/internal/check"
	"github.com/parley-im/parley/loadtest/internal/client"
	"github.com/parley-im/parley/loadtest/internal/probe"
	"github.com/parley-im/parley/loadtest/internal/report"
	"github.com/parley-im/parley/loadtest/internal/worker"
)

// Names of the scenarios.
const (
	Conns     = "conns"
	P2P       = "p2p"
	Group     = "group"
	Reconnect = "reconnect"
	Smoke     = "smoke"
)

// Names lists the scenarios in the order the usage shows them.
var Names = []string{Conns, P2P, Group, Reconnect, Smoke}

// password is every generated account's password.
const password = "loadtest-password"

// registerConcurrency bounds concurrent sign-ups.
const registerConcurrency = 32

// Config is a run's settings; main fills it from flags. Fields a scenario
// does not use are ignored.
type Config struct {
	Scenario string
	// Servers are base URLs, one per shard in shard order for a cluster.
	Servers []string
	// ServerLabel describes the servers in the report.
	ServerLabel string
	Transport   string
	SourceAddrs []netip.Addr
	// AckInterval is how often sessions flush acks (0: the SDK default).
	AckInterval time.Duration
	// Procs is the number of worker processes; ≤ 1 runs the one worker in
	// this process.
	Procs int
	// Exe and ExeArgs start a worker process (this program, with
	// worker.EnvWorker set); WorkerStderr gets their logs.
	Exe          string
	ExeArgs      []string
	WorkerStderr io.Writer

	Duration    time.Duration // conns: hold; others: sending
	Rate        float64       // msgs/s, all senders together
	Size        int           // message text bytes
	Pairs       int
	Conns       int
	Concurrency int // conns: streams opened at once
	GroupSize   int
	Senders     int
	Devices     int
	Messages    int // group: total to send (0: Rate×Duration); reconnect: per device
	Convs       int // reconnect: conversations per device (0: one per 1,000 messages)
	Window      int // closed-loop sends in flight per sender

	FindMax    bool
	Step       time.Duration
	StepFactor float64
	P99Bound   time.Duration
	MaxSteps   int

	// SendTimeout bounds one send; DrainTimeout the wait for deliveries
	// after sending; ConnectTimeout the wait for sessions to catch up.
	SendTimeout    time.Duration
	DrainTimeout   time.Duration
	ConnectTimeout time.Duration

	// Probe reads the server's memory and goroutines.
	Probe probe.Target
	// Progress gets the progress line; nil prints none. TTY rewrites one
	// line in place.
	Progress io.Writer
	TTY      bool
	Logger   *slog.Logger
}

// Run runs the configured scenario. The error is for runs that could not
// be carried out (setup failed, a worker died); what the checker found is
// in the result.
func Run(ctx context.Context, cfg Config) (*report.Result, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr, err := client.New(cfg.Transport, client.Config{SourceAddrs: cfg.SourceAddrs, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	defer func() { _ = tr.Close() }()
	f, err := newFleet(cfg)
	if err != nil {
		return nil, err
	}
	defer f.close(cfg.Logger)
	r := &run{
		cfg:   cfg,
		tr:    tr,
		fleet: f,
		id:    runID(),
		res: &report.Result{
			Scenario:  cfg.Scenario,
			Transport: tr.Name(),
			Server:    cfg.ServerLabel,
			Procs:     f.size(),
			StartedAt: time.Now(),
			LoadStart: probe.LoadAverage(),
		},
	}
	r.progress = newProgress(cfg.Progress, cfg.TTY, f)
	defer r.progress.stop()
	switch cfg.Scenario {
	case Conns:
		err = r.conns(ctx)
	case P2P:
		err = r.p2p(ctx)
	case Group:
		err = r.group(ctx)
	case Reconnect:
		err = r.reconnect(ctx)
	case Smoke:
		err = r.smoke(ctx)
	default:
		err = fmt.Errorf("unknown scenario %q (want one of %s)", cfg.Scenario, strings.Join(Names, ", "))
	}
	r.progress.stop()
	r.res.LoadEnd = probe.LoadAverage()
	if err != nil {
		return r.res, err
	}
	return r.res, nil
}

// run is one scenario run.
type run struct {
	cfg      Config
	tr       client.Transport
	fleet    *fleet
	id       string
	res      *report.Result
	progress *progress
	plan     *worker.Plan
	devices  []worker.DeviceSpec
	setupAPI []client.Device // shared-connection handles, by device index
}

// runID is a short random prefix keeping this run's usernames apart from
// earlier runs' on the same server.
func runID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "lt" + hex.EncodeToString(b[:])
}

// register signs n accounts up (one device each) and returns their specs,
// each on the server of its shard. Workers are assigned later.
func (r *run) register(ctx context.Context, n int, role string) ([]worker.DeviceSpec, error) {
	start := len(r.devices)
	specs := make([]worker.DeviceSpec, n)
	apis := make([]client.Device, n)
	var done atomic.Int64
	r.progress.phase("register "+role, func() string { return fmt.Sprintf("registered %d/%d", done.Load(), n) })
	var firstErr error
	var mu sync.Mutex
	sem := make(chan struct{}, registerConcurrency)
	var wg sync.WaitGroup
	for i := range n {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			spec, api, err := r.registerOne(ctx, fmt.Sprintf("%s.%s%06d", r.id, role, i))
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				return
			}
			specs[i], apis[i] = spec, api
			done.Add(1)
		})
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.devices = append(r.devices, specs...)
	r.setupAPI = append(r.setupAPI, apis...)
	r.cfg.Logger.Info("registered", "role", role, "n", n, "first_index", start)
	return specs, nil
}

func (r *run) registerOne(ctx context.Context, username string) (worker.DeviceSpec, client.Device, error) {
	servers := r.cfg.Servers
	creds, err := r.tr.Register(ctx, servers[0], username, password)
	if err != nil {
		if client.Code(err) == "resource_exhausted" {
			return worker.DeviceSpec{}, nil, fmt.Errorf("server refused registration (rate limited): %w; start parleyd with "+
				"PARLEY_AUTH_ADDRESS_ATTEMPT_BURST=0 (and PARLEY_CHAT_SEND_RATE=0 for sending), or use -spawn", err)
		}
		if l := client.Limit(err); l != "" {
			return worker.DeviceSpec{}, nil, fmt.Errorf("register %s: %s: %w", username, l, err)
		}
		return worker.DeviceSpec{}, nil, fmt.Errorf("register %s: %w", username, err)
	}
	server := servers[0]
	api, err := r.tr.Device(server, creds, false)
	if err != nil {
		return worker.DeviceSpec{}, nil, err
	}
	if len(servers) > 1 {
		// A user's stream belongs on its shard.
		sh, shards, addr, err := api.Locate(ctx)
		if err != nil {
			return worker.DeviceSpec{}, nil, fmt.Errorf("locate %s: %w", username, err)
		}
		switch {
		case addr != "":
			server = addr
		case shards == len(servers):
			server = servers[sh]
		default:
			return worker.DeviceSpec{}, nil, fmt.Errorf("the cluster has %d shards but %d servers were given (list one URL per shard, in shard order)", shards, len(servers))
		}
	}
	return worker.DeviceSpec{Name: username, Server: server, Creds: creds}, api, nil
}

// start hands the plan to the workers. assign gives each device its
// worker.
func (r *run) start(ctx context.Context, convs []worker.ConvSpec, track int, assign func(i int) int) error {
	plan := &worker.Plan{RunID: r.id, Transport: r.tr.Name(), AckInterval: r.cfg.AckInterval, Convs: convs, Track: track}
	for _, a := range r.cfg.SourceAddrs {
		plan.SourceAddrs = append(plan.SourceAddrs, a.String())
	}
	plan.Devices = make([]worker.DeviceSpec, len(r.devices))
	for i, d := range r.devices {
		d.Creds = r.setupAPI[i].Credentials() // rotated if setup refreshed them
		d.Worker = assign(i) % r.fleet.size()
		plan.Devices[i] = d
	}
	r.plan = plan
	if len(r.cfg.Servers) > 1 {
		per := map[string]int{}
		for _, d := range plan.Devices {
			per[d.Server]++
		}
		var parts []string
		for _, s := range r.cfg.Servers {
			parts = append(parts, fmt.Sprintf("%s %d", s, per[s]))
		}
		r.note("devices per shard: %s", strings.Join(parts, ", "))
	}
	return r.fleet.each(ctx, func(ctx context.Context, i int, w worker.Runner) error {
		return w.Init(ctx, worker.InitArgs{Plan: plan, Worker: i})
	})
}

// connect starts sessions for devices (nil: all) and merges the results.
func (r *run) connect(ctx context.Context, label string, devices []int, at time.Time, until map[string]uint64) (worker.ConnectResult, error) {
	r.progress.phase(label, nil)
	var merged worker.ConnectResult
	var mu sync.Mutex
	timeout := r.cfg.ConnectTimeout
	err := r.fleet.each(ctx, func(ctx context.Context, _ int, w worker.Runner) error {
		res, err := w.Connect(ctx, worker.ConnectArgs{Devices: devices, At: at, Until: until, Timeout: timeout})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		merged.Connected += res.Connected
		merged.Failed += res.Failed
		merged.Missing += res.Missing
		merged.SyncTimes = append(merged.SyncTimes, res.SyncTimes...)
		merged.CatchupTimes = append(merged.CatchupTimes, res.CatchupTimes...)
		if merged.FirstError == "" {
			merged.FirstError = res.FirstError
		}
		return nil
	})
	if err == nil && merged.Failed > 0 {
		err = fmt.Errorf("%d devices did not connect and catch up: %s", merged.Failed, merged.FirstError)
	}
	return merged, err
}

func (r *run) disconnect(ctx context.Context, devices []int) error {
	r.progress.phase("disconnect", nil)
	return r.fleet.each(ctx, func(ctx context.Context, _ int, w worker.Runner) error {
		return w.Disconnect(ctx, worker.DevicesArgs{Devices: devices})
	})
}

// sendPlan is a schedule split over the workers that own the senders.
type sendPlan struct {
	args []worker.SendArgs // per worker
}

// splitSend divides count messages at rate (0: closed loop) among the
// senders, each worker taking its own senders' share; tracked indexes
// are contiguous per worker, starting at indexBase.
func (r *run) splitSend(start time.Time, senders []worker.Sender, rate float64, count, indexBase int, tag string) sendPlan {
	byWorker := make([][]worker.Sender, r.fleet.size())
	for _, s := range senders {
		w := r.plan.Devices[s.Device].Worker
		byWorker[w] = append(byWorker[w], s)
	}
	p := sendPlan{args: make([]worker.SendArgs, r.fleet.size())}
	assigned, index := 0, indexBase
	for w, ss := range byWorker {
		if len(ss) == 0 {
			continue
		}
		n := count * len(ss) / len(senders)
		if assigned+n > count || w == lastNonEmpty(byWorker) {
			n = count - assigned
		}
		assigned += n
		p.args[w] = worker.SendArgs{
			Start:     start,
			Rate:      rate * float64(len(ss)) / float64(len(senders)),
			Count:     n,
			Senders:   ss,
			IndexBase: index,
			Tag:       fmt.Sprintf("%s-w%d", tag, w),
			Window:    r.cfg.Window,
			Size:      r.cfg.Size,
			Timeout:   r.cfg.SendTimeout,
		}
		index += n
	}
	return p
}

func lastNonEmpty(byWorker [][]worker.Sender) int {
	for i := len(byWorker) - 1; i >= 0; i-- {
		if len(byWorker[i]) > 0 {
			return i
		}
	}
	return -1
}

// scheduled returns when tracked message index was due under p.
func (p sendPlan) scheduled(index int) (time.Time, bool) {
	for _, a := range p.args {
		if a.Count == 0 || index < a.IndexBase || index >= a.IndexBase+a.Count || a.Rate <= 0 {
			continue
		}
		j := index - a.IndexBase
		return a.Start.Add(time.Duration(float64(j) * float64(time.Second) / a.Rate)), true
	}
	return time.Time{}, false
}

// send runs a send plan on every worker and merges the results.
func (r *run) send(ctx context.Context, p sendPlan) (worker.SendResult, error) {
	merged := worker.SendResult{Errors: map[string]int64{}, LastSeq: map[string]uint64{}}
	var mu sync.Mutex
	err := r.fleet.each(ctx, func(ctx context.Context, i int, w worker.Runner) error {
		if p.args[i].Count == 0 {
			return nil
		}
		res, err := w.Send(ctx, p.args[i])
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		merged.Sent += res.Sent
		merged.Acked += res.Acked
		merged.Failed += res.Failed
		for k, v := range res.Errors {
			merged.Errors[k] += v
		}
		for k, v := range res.LastSeq {
			merged.LastSeq[k] = max(merged.LastSeq[k], v)
		}
		merged.Elapsed = max(merged.Elapsed, res.Elapsed)
		merged.Behind = max(merged.Behind, res.Behind)
		if merged.FirstError == "" {
			merged.FirstError = res.FirstError
		}
		return nil
	})
	return merged, err
}

// drain waits for every online device to receive everything up to until.
func (r *run) drain(ctx context.Context, until map[string]uint64, timeout time.Duration) (worker.DrainResult, error) {
	var merged worker.DrainResult
	var mu sync.Mutex
	err := r.fleet.each(ctx, func(ctx context.Context, _ int, w worker.Runner) error {
		res, err := w.Drain(ctx, worker.DrainArgs{Until: until, Timeout: timeout})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		merged.Missing += res.Missing
		merged.TimedOut = merged.TimedOut || res.TimedOut
		merged.Waited = max(merged.Waited, res.Waited)
		return nil
	})
	return merged, err
}

// check runs the delivery checker on every worker and records the merged
// verdict in the result.
func (r *run) check(ctx context.Context) (check.Report, error) {
	r.progress.phase("check", nil)
	var merged check.Report
	var mu sync.Mutex
	err := r.fleet.each(ctx, func(ctx context.Context, _ int, w worker.Runner) error {
		res, err := w.Check(ctx, worker.CheckArgs{Timeout: r.cfg.DrainTimeout})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		merged.Merge(res)
		return nil
	})
	if err != nil {
		return merged, err
	}
	r.res.SetCheck(merged)
	r.res.Pass = merged.OK()
	if p := r.fleet.progress(ctx); p.Disconnects > 0 {
		r.res.Disconnects = p.Disconnects
		r.note("%d session streams broke and reconnected (the checker counts what that cost); the first: %s", p.Disconnects, p.DisconnectError)
	}
	return merged, nil
}

// sample reads the server's numbers into a report sample.
func (r *run) sample(ctx context.Context, at string, streams int64) report.Sample {
	s := report.Sample{At: at, Streams: streams}
	if !r.cfg.Probe.Known() {
		return s
	}
	ps, err := r.cfg.Probe.Sample(ctx)
	if err != nil {
		r.cfg.Logger.Warn("reading server numbers", "err", err)
	}
	s.RSSBytes, s.Goroutines, s.OpenFiles = max(ps.RSSBytes, 0), max(ps.Goroutines, 0), max(ps.OpenFiles, 0)
	s.HeapInuseBytes, s.StackInuseBytes = max(ps.HeapInuseBytes, 0), max(ps.StackInuseBytes, 0)
	return s
}

// serverNow records the server's current RSS and goroutines in the result.
func (r *run) serverNow(ctx context.Context) {
	s := r.sample(ctx, "end", 0)
	r.res.ServerRSSBytes, r.res.ServerGoroutines = s.RSSBytes, s.Goroutines
}

func (r *run) note(format string, args ...any) {
	r.res.Notes = append(r.res.Notes, fmt.Sprintf(format, args...))
}
