package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/loadtest/internal/check"
	"github.com/parley-im/parley/loadtest/internal/client"
	"github.com/parley-im/parley/loadtest/internal/stats"
)

const (
	// historyPage is the GetHistory page size (the server's maximum).
	historyPage = 200
	// maxInFlight bounds the open-loop sends awaiting an answer in one
	// worker; beyond it the schedule waits (and its lag shows in the
	// latencies, which are measured from the scheduled time).
	maxInFlight = 20000
)

// Runner is a worker, in this process (*Worker) or another (*Remote). Its
// methods are the phases the coordinator drives; each may be called while
// another runs (Progress always is), but phases are not meant to overlap.
type Runner interface {
	Init(ctx context.Context, a InitArgs) error
	Connect(ctx context.Context, a ConnectArgs) (ConnectResult, error)
	Idle(ctx context.Context, a IdleArgs) (IdleResult, error)
	Disconnect(ctx context.Context, a DevicesArgs) error
	Send(ctx context.Context, a SendArgs) (SendResult, error)
	Drain(ctx context.Context, a DrainArgs) (DrainResult, error)
	Collect(ctx context.Context) (CollectResult, error)
	Check(ctx context.Context, a CheckArgs) (CheckResult, error)
	Progress(ctx context.Context) (Progress, error)
	Close(ctx context.Context) error
}

// Worker runs its share of a plan's devices in this process. It is safe for
// concurrent use.
type Worker struct {
	logger *slog.Logger

	mu       sync.Mutex // guards plan, tr, devs, idles, pinger
	plan     *Plan
	id       int
	tr       client.Transport
	devs     map[int]*device // by plan index; this worker's only
	convsOf  map[int][]string
	idles    []client.Idle
	stopPing context.CancelFunc
	pingWG   sync.WaitGroup

	deliver *stats.Histogram
	ack     *stats.Histogram
	track   []slot
	sends   check.Sends

	sent, acked, failed, delivered, disconnects atomic.Int64
	disconnectErr                               atomic.Pointer[string]
	collectedUpTo                               int64 // delivered at the last Collect; guarded by mu
}

// slot tracks one message's deliveries.
type slot struct {
	n    atomic.Int32
	last atomic.Int64
}

// device is one device of this worker.
type device struct {
	idx  int
	spec DeviceSpec
	log  *check.Device

	mu        sync.Mutex
	api       client.Device // nil while offline
	sess      client.Session
	synced    chan struct{} // closed on the current session's first sync
	syncedAt  time.Time
	target    map[string]uint64 // catch-up target per conversation
	remaining int
	reached   chan struct{} // closed when remaining hits 0
	reachedAt time.Time
}

// New returns a worker that logs to logger; Init gives it its work.
func New(logger *slog.Logger) *Worker {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Worker{logger: logger, deliver: stats.NewHistogram(), ack: stats.NewHistogram()}
}

// Init takes the plan and sets up (without I/O) this worker's devices.
func (w *Worker) Init(_ context.Context, a InitArgs) error {
	var addrs []netip.Addr
	for _, s := range a.Plan.SourceAddrs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("worker: source address: %w", err)
		}
		addrs = append(addrs, ip)
	}
	tr, err := client.New(a.Plan.Transport, client.Config{SourceAddrs: addrs, AckInterval: a.Plan.AckInterval, Logger: w.logger})
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.plan, w.id, w.tr = a.Plan, a.Worker, tr
	w.devs = map[int]*device{}
	w.convsOf = map[int][]string{}
	for i, d := range a.Plan.Devices {
		if d.Worker == a.Worker {
			w.devs[i] = &device{idx: i, spec: d, log: check.NewDevice(d.Name, d.Creds.UserID, d.Creds.DeviceID)}
		}
	}
	for _, c := range a.Plan.Convs {
		for _, m := range c.Members {
			if _, ok := w.devs[m]; ok {
				w.convsOf[m] = append(w.convsOf[m], c.ID)
			}
		}
	}
	if a.Plan.Track > 0 {
		w.track = make([]slot, a.Plan.Track)
	}
	return nil
}

// mine returns this worker's devices among idxs (all of them for nil), in
// index order.
func (w *Worker) mine(idxs []int) []*device {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*device
	if idxs == nil {
		for _, d := range w.devs {
			out = append(out, d)
		}
		slices.SortFunc(out, func(a, b *device) int { return a.idx - b.idx })
		return out
	}
	for _, i := range idxs {
		if d, ok := w.devs[i]; ok {
			out = append(out, d)
		}
	}
	return out
}

// Connect starts sessions for the devices and waits until each caught up
// (and reached its Until target), or the timeout.
func (w *Worker) Connect(ctx context.Context, a ConnectArgs) (ConnectResult, error) {
	devs := w.mine(a.Devices)
	if d := time.Until(a.At); d > 0 {
		if err := sleep(ctx, d); err != nil {
			return ConnectResult{}, err
		}
	}
	start := time.Now()
	if a.At.IsZero() {
		a.At = start
	}
	deadline := start.Add(a.Timeout)
	var res ConnectResult
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, d := range devs {
		wg.Go(func() {
			err := w.connectDevice(ctx, d, a.Until)
			var synced, caught time.Duration
			var missing int64
			if err == nil {
				synced, caught, missing, err = w.awaitDevice(ctx, d, a.At, deadline)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = fmt.Sprintf("%s: %v", d.spec.Name, err)
				}
				res.Missing += missing
				return
			}
			res.Connected++
			res.SyncTimes = append(res.SyncTimes, synced)
			if a.Until != nil {
				res.CatchupTimes = append(res.CatchupTimes, caught)
			}
		})
	}
	wg.Wait()
	return res, nil
}

// connectDevice opens the device's connection and session, with its
// catch-up target set first so no delivery is missed.
func (w *Worker) connectDevice(ctx context.Context, d *device, until map[string]uint64) error {
	d.mu.Lock()
	if d.sess != nil {
		d.mu.Unlock()
		return errors.New("already connected")
	}
	if d.api == nil {
		api, err := w.tr.Device(d.spec.Server, d.spec.Creds, true)
		if err != nil {
			d.mu.Unlock()
			return err
		}
		d.api = api
	}
	d.synced = make(chan struct{})
	d.syncedAt = time.Time{}
	w.setTargetLocked(d, until)
	api := d.api
	d.mu.Unlock()

	// The session outlives this call: it ends with Disconnect or Close.
	sess, err := api.Connect(context.WithoutCancel(ctx), w.handler(d))
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.sess = sess
	d.mu.Unlock()
	return nil
}

// setTargetLocked sets the seqs the device must reach, per conversation.
func (w *Worker) setTargetLocked(d *device, until map[string]uint64) {
	d.target, d.remaining, d.reached, d.reachedAt = nil, 0, make(chan struct{}), time.Time{}
	if until == nil {
		close(d.reached)
		return
	}
	d.target = map[string]uint64{}
	for _, conv := range w.convsOf[d.idx] {
		if seq := until[conv]; seq > d.log.High(conv) {
			d.target[conv] = seq
			d.remaining++
		}
	}
	if d.remaining == 0 {
		d.reachedAt = time.Now()
		close(d.reached)
	}
}

// awaitDevice waits for the device's first sync and its catch-up target.
func (w *Worker) awaitDevice(ctx context.Context, d *device, from, deadline time.Time) (synced, caught time.Duration, missing int64, err error) {
	d.mu.Lock()
	syncCh, reached := d.synced, d.reached
	d.mu.Unlock()
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for _, ch := range []chan struct{}{syncCh, reached} {
		select {
		case <-ch:
		case <-timer.C:
			return 0, 0, w.missing(d), fmt.Errorf("not caught up within %s", deadline.Sub(from).Round(time.Millisecond))
		case <-ctx.Done():
			return 0, 0, 0, ctx.Err()
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncedAt.Sub(from), d.reachedAt.Sub(from), 0, nil
}

// missing counts the seqs a device still lacks below its target.
func (w *Worker) missing(d *device) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var n int64
	for conv, seq := range d.target {
		if high := d.log.High(conv); high < seq {
			n += int64(seq - high)
		}
	}
	return n
}

// progressed notes that a device reached seq in conv.
func (d *device) progressed(conv string, seq uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t, ok := d.target[conv]
	if !ok || seq < t {
		return
	}
	delete(d.target, conv)
	d.remaining--
	if d.remaining == 0 {
		d.reachedAt = time.Now()
		close(d.reached)
	}
}

// handler turns a session's events into records.
func (w *Worker) handler(d *device) client.Handler {
	self := d.spec.Creds.DeviceID
	return client.Handler{
		Message: func(m *parleyv1.Message) {
			now := time.Now()
			conv, seq := m.GetConversationId(), m.GetSeq()
			d.log.Received(conv, seq)
			w.delivered.Add(1)
			if m.GetSenderDeviceId() != self {
				if idx, at, ok := decodeText(m.GetContent().GetText()); ok {
					w.deliver.Record(now.Sub(time.Unix(0, at)))
					if idx >= 0 && idx < len(w.track) {
						s := &w.track[idx]
						s.n.Add(1)
						for {
							last := s.last.Load()
							if now.UnixNano() <= last || s.last.CompareAndSwap(last, now.UnixNano()) {
								break
							}
						}
					}
				}
			}
			d.progressed(conv, seq)
		},
		Gap: func(conv string, from, to uint64) {
			w.fillGap(d, conv, from, to)
			d.progressed(conv, to)
		},
		Synced: func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			select {
			case <-d.synced:
			default:
				d.syncedAt = time.Now()
				close(d.synced)
			}
		},
		Disconnected: func(err error) {
			w.disconnects.Add(1)
			msg := fmt.Sprintf("%s: %v", d.spec.Name, err)
			w.disconnectErr.CompareAndSwap(nil, &msg)
			w.logger.Info("stream lost; reconnecting", "device", d.spec.Name, "err", err)
		},
		Repeat: func(string, uint64) { d.log.Redelivered() },
	}
}

// fillGap pages the messages a catch-up skipped, as a client that wants
// them does.
func (w *Worker) fillGap(d *device, conv string, from, to uint64) {
	d.mu.Lock()
	api := d.api
	d.mu.Unlock()
	if api == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for after := from; after < to; {
		msgs, more, err := api.History(ctx, conv, after, historyPage)
		if err != nil {
			w.logger.Warn("paging a gap failed", "device", d.spec.Name, "conversation_id", conv, "err", err)
			return
		}
		for _, m := range msgs {
			if m.GetSeq() > to {
				return
			}
			d.log.Filled(conv, m.GetSeq())
			after = m.GetSeq()
		}
		if !more || len(msgs) == 0 {
			return
		}
	}
}

// Idle opens bare streams for the devices, Concurrency at a time, and keeps
// them open (pinged) until Close.
func (w *Worker) Idle(ctx context.Context, a IdleArgs) (IdleResult, error) {
	devs := w.mine(a.Devices)
	start := time.Now()
	var res IdleResult
	var mu sync.Mutex
	stop := false
	sem := make(chan struct{}, max(a.Concurrency, 1))
	var wg sync.WaitGroup
	for _, d := range devs {
		mu.Lock()
		halt := stop
		mu.Unlock()
		if halt {
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return res, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			idle, err := w.openIdle(ctx, d, a.Timeout)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Failed++
				if res.FirstError == "" {
					res.FirstError = err.Error()
				}
				if l := client.Limit(err); l != "" && res.Limit == "" {
					res.Limit = l
				}
				if res.Limit != "" || res.Failed >= max(a.MaxFailures, 1) {
					stop = true
				}
				return
			}
			res.Opened++
			w.mu.Lock()
			w.idles = append(w.idles, idle)
			w.mu.Unlock()
			// Ping from the first stream on: opening the rest may take
			// longer than the server's heartbeat timeout.
			w.startPinger()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res, nil
}

func (w *Worker) openIdle(ctx context.Context, d *device, timeout time.Duration) (client.Idle, error) {
	api, err := w.tr.Device(d.spec.Server, d.spec.Creds, true)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	idle, err := api.OpenIdle(octx)
	if err != nil {
		_ = api.Close()
		if octx.Err() != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("%s: no sync_complete within %s (server overloaded or out of file descriptors?): %w", d.spec.Name, timeout, err)
		}
		return nil, fmt.Errorf("%s: %w", d.spec.Name, err)
	}
	d.mu.Lock()
	d.api = api
	d.mu.Unlock()
	return idle, nil
}

// startPinger pings every idle stream at its heartbeat interval (once).
func (w *Worker) startPinger() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopPing != nil || len(w.idles) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.stopPing = cancel
	every := w.idles[0].HeartbeatInterval() / 2
	w.pingWG.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w.mu.Lock()
			idles := slices.Clone(w.idles)
			w.mu.Unlock()
			for _, i := range idles {
				if i.Err() == nil {
					_ = i.Ping()
				}
			}
		}
	})
}

// Disconnect closes the devices' sessions and connections.
func (w *Worker) Disconnect(_ context.Context, a DevicesArgs) error {
	var wg sync.WaitGroup
	for _, d := range w.mine(a.Devices) {
		wg.Go(func() { w.disconnect(d) })
	}
	wg.Wait()
	return nil
}

func (w *Worker) disconnect(d *device) {
	d.mu.Lock()
	sess, api := d.sess, d.api
	d.sess, d.api = nil, nil
	d.mu.Unlock()
	if sess != nil {
		_ = sess.Close()
	}
	if api != nil {
		// The next connection resumes with the rotated tokens.
		creds := api.Credentials()
		_ = api.Close()
		d.mu.Lock()
		d.spec.Creds = creds
		d.mu.Unlock()
	}
}

// Send runs a send schedule and returns once every send was answered (or
// timed out).
func (w *Worker) Send(ctx context.Context, a SendArgs) (SendResult, error) {
	if len(a.Senders) == 0 || a.Count == 0 {
		return SendResult{}, nil
	}
	sessions := make([]client.Session, len(a.Senders))
	selfs := make([]string, len(a.Senders))
	for i, s := range a.Senders {
		ds := w.mine([]int{s.Device})
		if len(ds) == 0 {
			return SendResult{}, fmt.Errorf("worker %d: sender %d is not mine", w.id, s.Device)
		}
		ds[0].mu.Lock()
		sessions[i], selfs[i] = ds[0].sess, ds[0].spec.Creds.DeviceID
		ds[0].mu.Unlock()
		if sessions[i] == nil {
			return SendResult{}, fmt.Errorf("worker %d: sender %s is offline", w.id, ds[0].spec.Name)
		}
	}
	res := SendResult{Errors: map[string]int64{}, LastSeq: map[string]uint64{}}
	var mu sync.Mutex
	one := func(j int, due time.Time) {
		i := j % len(a.Senders)
		conv := a.Senders[i].Conv
		id := fmt.Sprintf("%s-%d", a.Tag, j)
		text := encodeText(a.IndexBase+j, due, a.Size)
		sctx, cancel := context.WithTimeout(ctx, a.Timeout)
		w.sent.Add(1)
		ack, err := sessions[i].Send(sctx, conv, id, text)
		cancel()
		now := time.Now()
		rec := check.Send{DeviceID: selfs[i], Conv: conv, ClientMsgID: id}
		mu.Lock()
		defer mu.Unlock()
		res.Sent++
		res.Elapsed = max(res.Elapsed, now.Sub(a.Start))
		if err != nil {
			w.failed.Add(1)
			res.Failed++
			code := client.Code(err)
			res.Errors[code]++
			if res.FirstError == "" {
				res.FirstError = err.Error()
			}
			rec.Err = code
		} else {
			w.acked.Add(1)
			res.Acked++
			w.ack.Record(now.Sub(due))
			rec.Seq, rec.Duplicate = ack.GetMessage().GetSeq(), ack.GetDuplicate()
			res.LastSeq[conv] = max(res.LastSeq[conv], rec.Seq)
		}
		w.sends.Add(rec)
	}

	var wg sync.WaitGroup
	if a.Rate > 0 {
		sem := make(chan struct{}, maxInFlight)
		interval := float64(time.Second) / a.Rate
		for j := range a.Count {
			due := a.Start.Add(time.Duration(float64(j) * interval))
			if d := time.Until(due); d > 0 {
				if err := sleep(ctx, d); err != nil {
					break
				}
			} else {
				res.Behind = max(res.Behind, -d)
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Go(func() {
				defer func() { <-sem }()
				one(j, due)
			})
		}
	} else {
		if d := time.Until(a.Start); d > 0 {
			if err := sleep(ctx, d); err != nil {
				return res, err
			}
		}
		senders := map[int]bool{}
		for _, s := range a.Senders {
			senders[s.Device] = true
		}
		var next atomic.Int64
		for range min(a.Count, max(a.Window, 1)*len(senders)) {
			wg.Go(func() {
				for ctx.Err() == nil {
					j := int(next.Add(1) - 1)
					if j >= a.Count {
						return
					}
					one(j, time.Now())
				}
			})
		}
	}
	wg.Wait()
	return res, ctx.Err()
}

// Drain waits until every online device has every seq up to Until of its
// conversations, or the timeout.
func (w *Worker) Drain(ctx context.Context, a DrainArgs) (DrainResult, error) {
	start := time.Now()
	var online []*device
	for _, d := range w.mine(nil) {
		d.mu.Lock()
		if d.sess != nil {
			w.setTargetLocked(d, a.Until)
			online = append(online, d)
		}
		d.mu.Unlock()
	}
	timer := time.NewTimer(a.Timeout)
	defer timer.Stop()
	res := DrainResult{}
	for _, d := range online {
		d.mu.Lock()
		reached := d.reached
		d.mu.Unlock()
		select {
		case <-reached:
			continue
		case <-timer.C:
			res.TimedOut = true
		case <-ctx.Done():
			return res, ctx.Err()
		}
		break
	}
	if res.TimedOut {
		for _, d := range online {
			res.Missing += w.missing(d)
		}
	}
	res.Waited = time.Since(start)
	return res, nil
}

// Collect returns what was measured since the last Collect and resets it.
func (w *Worker) Collect(context.Context) (CollectResult, error) {
	var res CollectResult
	var err1, err2 error
	res.Deliver, err1 = w.deliver.Encode()
	res.Ack, err2 = w.ack.Encode()
	if err := errors.Join(err1, err2); err != nil {
		return res, err
	}
	w.deliver.Reset()
	w.ack.Reset()
	w.mu.Lock()
	cur := w.delivered.Load()
	res.Delivered = cur - w.collectedUpTo
	w.collectedUpTo = cur
	track := w.track
	w.mu.Unlock()
	for i := range track {
		s := &track[i]
		if n := s.n.Swap(0); n > 0 {
			res.Track = append(res.Track, TrackEntry{Index: i, N: n, Last: s.last.Swap(0)})
		}
	}
	return res, nil
}

// Check fetches the history of every conversation of this worker's devices,
// waits (bounded) for the devices to receive what it holds, and runs the
// delivery checker.
func (w *Worker) Check(ctx context.Context, a CheckArgs) (CheckResult, error) {
	w.mu.Lock()
	plan := w.plan
	w.mu.Unlock()
	var convs []check.Conv
	until := map[string]uint64{}
	for _, c := range plan.Convs {
		var reader *device
		var members []string
		for _, m := range c.Members {
			members = append(members, plan.Devices[m].Creds.UserID)
			if reader == nil {
				if ds := w.mine([]int{m}); len(ds) > 0 {
					reader = ds[0]
				}
			}
		}
		if reader == nil {
			continue
		}
		msgs, err := w.history(ctx, reader, c.ID)
		if err != nil {
			return CheckResult{}, fmt.Errorf("worker %d: history of %s: %w", w.id, c.Label, err)
		}
		owned := len(c.Members) > 0 && plan.Devices[c.Members[0]].Worker == w.id
		convs = append(convs, check.Conv{ID: c.ID, Label: c.Label, Members: slices.Compact(slices.Sorted(slices.Values(members))), Messages: msgs, Owned: owned})
		if n := len(msgs); n > 0 {
			until[c.ID] = msgs[n-1].Seq
		}
	}
	if _, err := w.Drain(ctx, DrainArgs{Until: until, Timeout: a.Timeout}); err != nil {
		return CheckResult{}, err
	}
	var logs []*check.Device
	for _, d := range w.mine(nil) {
		logs = append(logs, d.log)
	}
	return check.Check(convs, logs, w.sends.List()), nil
}

// history reads a conversation's whole history through a device.
func (w *Worker) history(ctx context.Context, d *device, conv string) ([]check.Message, error) {
	d.mu.Lock()
	api, spec := d.api, d.spec
	d.mu.Unlock()
	if api == nil {
		var err error
		if api, err = w.tr.Device(spec.Server, spec.Creds, false); err != nil {
			return nil, err
		}
	}
	var out []check.Message
	var after uint64
	for {
		msgs, more, err := api.History(ctx, conv, after, historyPage)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			out = append(out, check.Message{Seq: m.GetSeq(), ClientMsgID: m.GetClientMsgId(), SenderDeviceID: m.GetSenderDeviceId()})
			after = m.GetSeq()
		}
		if !more || len(msgs) == 0 {
			return out, nil
		}
	}
}

// Progress returns the counters.
func (w *Worker) Progress(context.Context) (Progress, error) {
	p := Progress{Sent: w.sent.Load(), Acked: w.acked.Load(), Failed: w.failed.Load(), Delivered: w.delivered.Load(), Disconnects: w.disconnects.Load()}
	if e := w.disconnectErr.Load(); e != nil {
		p.DisconnectError = *e
	}
	for _, d := range w.mine(nil) {
		d.mu.Lock()
		if d.sess != nil {
			p.Online++
			select {
			case <-d.synced:
				p.Synced++
			default:
			}
		}
		d.mu.Unlock()
	}
	w.mu.Lock()
	for _, i := range w.idles {
		if i.Err() == nil {
			p.Idle++
		} else {
			p.Dropped++
			if p.DropError == "" {
				p.DropError = i.Err().Error()
			}
		}
	}
	w.mu.Unlock()
	return p, nil
}

// Close ends every session and stream and closes the connections.
func (w *Worker) Close(context.Context) error {
	w.mu.Lock()
	stop := w.stopPing
	idles := w.idles
	w.idles = nil
	w.mu.Unlock()
	if stop != nil {
		stop()
		w.pingWG.Wait()
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	for _, i := range idles {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_ = i.Close()
		})
	}
	for _, d := range w.mine(nil) {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			w.disconnect(d)
		})
	}
	wg.Wait()
	w.mu.Lock()
	tr := w.tr
	w.mu.Unlock()
	if tr != nil {
		return tr.Close()
	}
	return nil
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
