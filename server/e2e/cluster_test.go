package e2e_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/clients/go/parley"
	"github.com/parley-im/parley/server/shard"
	"github.com/parley-im/parley/server/testserver"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

const (
	clusterShards    = 2
	clusterUsers     = 24 // two devices each
	clusterGroups    = 4
	clusterGroupSize = 5 // members from both shards
	// clusterTraffic is the shortest time senders run; they run on until the
	// cluster has recovered from every fault.
	clusterTraffic = 12 * time.Second
	// clusterSendInterval paces each device: 48 devices make at most 190
	// sends/s (about 120/s measured, as answers take longer than a tick), each
	// delivered to 4 (direct) or 10 (group) devices.
	clusterSendInterval = 250 * time.Millisecond
	// clusterWindow bounds a device's sends in flight; a device whose node is
	// down skips its turns rather than piling up sends.
	clusterWindow = 3
	// clusterSendTimeout bounds one send. The SDK retries an unanswered send
	// on every new stream until then, so only a server that never answers
	// reaches it.
	clusterSendTimeout = 45 * time.Second
	// clusterProgress is how many more acknowledged sends prove that the
	// cluster serves again after a fault, and clusterRecovery how long that
	// may take.
	clusterProgress = 100
	clusterRecovery = 30 * time.Second
	// clusterConverge bounds the wait for every device to catch up after the
	// traffic.
	clusterConverge = 60 * time.Second
)

// TestClusterSurvivesFaults runs a two-shard cluster (shard 0 on two
// processes, shard 1 on one) on a real PostgreSQL and a real Redis. Devices
// of two dozen users, spread over the processes of their shard, send to
// direct conversations (within and across shards) and groups while the test
// SIGKILLs and restarts a process, restarts Redis (which comes back empty)
// and restarts PostgreSQL. Then checkCluster proves from what every device
// received, what every send returned and what the store holds that nothing
// acknowledged was lost, nothing was stored or shown twice, and every device
// saw its conversations in seq order without gaps.
//
// It runs alone (no t.Parallel): its load would stretch the other tests'
// waits and theirs its own.
func TestClusterSurvivesFaults(t *testing.T) {
	begin := time.Now()
	phase := func(format string, args ...any) {
		t.Logf("%6.2fs  %s", time.Since(begin).Seconds(), fmt.Sprintf(format, args...))
	}
	c := startCluster(t)
	phase("postgres, redis and parleyd %s up", strings.Join(c.nodeNames(), ", "))
	users := newClusterUsers(t, c)
	convs := createClusterConvs(t, users)
	var devices []*clusterDevice
	for _, u := range users {
		devices = append(devices, u.devices...)
	}
	for _, d := range devices {
		d.connectNoWait(t)
	}
	for _, d := range devices {
		d.rec.waitSynced(t, 1)
	}
	phase("%d users, %d devices, %d conversations; devices connected", len(users), len(devices), len(convs))

	tr := startTraffic(t, users)
	minTraffic := time.After(clusterTraffic)
	tr.waitAcked(t, clusterProgress, "traffic under way")
	phase("traffic under way: %d acknowledged", tr.ackedCount())

	faults := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"kill_a_process", func(t *testing.T) {
			victim := c.node(t, "s0b")
			var on []*clusterDevice
			for _, d := range devices {
				if d.node == victim {
					on = append(on, d)
				}
			}
			synced := make([]int, len(on))
			for i, d := range on {
				synced[i] = d.rec.syncedCount()
			}
			victim.srv.Kill()
			phase("SIGKILLed %s (%d devices on it)", victim.name, len(on))
			tr.waitAcked(t, tr.ackedCount()+clusterProgress, "the other processes serve while "+victim.name+" is down")
			victim.srv.Restart(t)
			phase("%s restarted on %s", victim.name, victim.srv.Addr())
			for i, d := range on {
				d.rec.waitSynced(t, synced[i]+1)
			}
			phase("its devices reconnected and caught up")
			tr.waitAcked(t, tr.ackedCount()+clusterProgress, "after "+victim.name+" restarted")
		}},
		{"restart_redis", func(t *testing.T) {
			require.NoError(t, c.redis.Restart())
			phase("redis restarted (empty)")
			tr.waitAcked(t, tr.ackedCount()+clusterProgress, "after redis restarted")
		}},
		{"restart_postgres", func(t *testing.T) {
			require.NoError(t, c.pg.Restart())
			phase("postgres restarted")
			tr.waitAcked(t, tr.ackedCount()+clusterProgress, "after postgres restarted")
		}},
	}
	for _, f := range faults {
		tr.setPhase(f.name)
		if !t.Run(f.name, f.run) {
			t.FailNow()
		}
		tr.setPhase("")
	}
	phase("recovered: %d acknowledged", tr.ackedCount())
	<-minTraffic
	tr.finish()
	phase("traffic stopped: %d sends answered", len(tr.records))

	in := checkInput{Convs: converge(t, users, convs), Sends: tr.records}
	phase("converged")
	for _, d := range devices {
		in.Devices = append(in.Devices, d.log())
	}
	report := checkCluster(in)
	t.Logf("counts: %v", report.Counts)
	if n := len(report.Violations); n > 0 {
		const show = 40
		shown := report.Violations[:min(n, show)]
		t.Errorf("%d violations (first %d):\n%s", n, len(shown), strings.Join(shown, "\n"))
	}
	// The SDK re-sends an unanswered send on every new stream: a send that
	// got no answer in clusterSendTimeout was dropped by the server.
	var unanswered []string
	for _, s := range in.Sends {
		if connect.CodeOf(s.Err) == connect.CodeDeadlineExceeded {
			unanswered = append(unanswered, fmt.Sprintf("%s %q to %s", s.Device, s.ClientMsgID, s.Conv))
		}
	}
	if len(unanswered) > 0 {
		t.Errorf("%d sends got no answer within %v, e.g. %s", len(unanswered), clusterSendTimeout, strings.Join(unanswered[:min(5, len(unanswered))], "; "))
	}
	require.Positive(t, report.Counts.Acked)
	phase("checked")
}

// cluster is PostgreSQL, Redis and the parleyd processes sharing them.
type cluster struct {
	pg    *realsvc.Postgres
	redis *realsvc.Redis
	nodes []*clusterNode
}

// clusterNode is one parleyd process. Its name (-node) and address survive
// its restarts.
type clusterNode struct {
	name  string
	shard int
	srv   *testserver.Server
}

// startCluster starts PostgreSQL, Redis (without persistence, so a restart
// loses every stream and consumer group) and three parleyd processes: s0a and
// s0b serve shard 0, s1a serves shard 1. Everything stops when the test ends.
func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{
		pg:    realsvc.StartPostgresTB(t),
		redis: realsvc.StartRedisTB(t, realsvc.RedisOptions{}),
	}
	// A database of its own, not a schema: the store may take
	// database-wide advisory locks (migrations from several processes).
	dsn := c.pg.NewDatabase(t)
	// Access tokens are checked on whichever process a device reaches: one
	// key for all (the first process writes it, the others read it).
	signingKey := filepath.Join(t.TempDir(), "signing.key")
	for _, n := range []struct {
		name  string
		shard int
	}{{"s0a", 0}, {"s0b", 0}, {"s1a", 1}} {
		srv := testserver.Start(t,
			testserver.WithStableAddr(),
			testserver.WithArgs(
				"-store", dsn,
				"-redis", c.redis.URL(),
				"-shard", strconv.Itoa(n.shard),
				"-shards", strconv.Itoa(clusterShards),
				"-node", n.name,
				// Catch-up is unbounded here, so any gap frame is a fault.
				"-catchup-limit", "1000000",
			),
			// As in parleyd's benchmarks: the abuse limits would refuse this
			// many devices signing up and sending from one address.
			testserver.WithEnv(
				"PARLEY_AUTH_SIGNING_KEY_FILE="+signingKey,
				"PARLEY_AUTH_ARGON2_MEMORY_KIB=1024",
				"PARLEY_AUTH_ADDRESS_ATTEMPT_BURST=0",
				"PARLEY_CHAT_SEND_RATE=0",
			),
		)
		c.nodes = append(c.nodes, &clusterNode{name: n.name, shard: n.shard, srv: srv})
	}
	return c
}

func (c *cluster) node(t *testing.T, name string) *clusterNode {
	t.Helper()
	for _, n := range c.nodes {
		if n.name == name {
			return n
		}
	}
	t.Fatalf("no node %s", name)
	return nil
}

func (c *cluster) nodeNames() []string {
	names := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		names[i] = n.name
	}
	return names
}

// serving returns the node a user's i-th device connects to: one of the
// user's shard, the devices spread over the shard's replicas.
func (c *cluster) serving(shard, i int) *clusterNode {
	var replicas []*clusterNode
	for _, n := range c.nodes {
		if n.shard == shard {
			replicas = append(replicas, n)
		}
	}
	return replicas[i%len(replicas)]
}

type clusterUser struct {
	name    string
	id      string
	shard   int
	devices []*clusterDevice
	convs   []string // ids of the conversations the user is a member of
}

// clusterDevice is a device (helpers_test.go) bound to a node of its user's
// shard, with a count of what its streams carried beneath the SDK.
type clusterDevice struct {
	*device
	id   string
	user *clusterUser
	node *clusterNode
	wire *wireCounter
}

// newClusterUsers registers the users and signs in two devices each. Accounts
// live in PostgreSQL, so a user registers on any node; the id it gets decides
// the shard, whose nodes its devices then use.
func newClusterUsers(t *testing.T, c *cluster) []*clusterUser {
	t.Helper()
	users := make([]*clusterUser, clusterUsers)
	for i := range users {
		name := fmt.Sprintf("u%02d", i)
		reg, err := parley.Register(t.Context(), c.nodes[i%len(c.nodes)].srv.URL(), name, password, parley.WithDeviceName(name+"-1"))
		require.NoError(t, err)
		u := &clusterUser{name: name, id: reg.UserID(), shard: shard.Of(reg.UserID(), clusterShards)}
		for j := range 2 {
			node := c.serving(u.shard, j)
			wire := newWireCounter()
			opts := []parley.Option{parley.WithInterceptors(wire.intercept), parley.WithDeviceName(fmt.Sprintf("%s-%d", name, j+1))}
			var client *parley.Client
			if j == 0 {
				// The registered device itself, bound to its node. reg is
				// not used again: two Clients must not spend one refresh
				// token.
				client, err = parley.Resume(node.srv.URL(), reg.Credentials(), opts...)
			} else {
				client, err = parley.Login(t.Context(), node.srv.URL(), name, password, opts...)
			}
			require.NoError(t, err)
			u.devices = append(u.devices, &clusterDevice{
				device: &device{name: fmt.Sprintf("%s-%d", name, j+1), client: client},
				id:     client.DeviceID(),
				user:   u,
				node:   node,
				wire:   wire,
			})
		}
		users[i] = u
	}
	return users
}

// clusterConv is a conversation and its members, all of whom joined at its
// creation.
type clusterConv struct {
	id      string
	label   string
	members []*clusterUser
}

// createClusterConvs creates a direct conversation between each user and the
// next (a ring, so some pairs share a shard and some do not) and groups
// whose members alternate between the shards.
func createClusterConvs(t *testing.T, users []*clusterUser) []*clusterConv {
	t.Helper()
	var convs []*clusterConv
	add := func(id, label string, members ...*clusterUser) {
		convs = append(convs, &clusterConv{id: id, label: label, members: members})
		for _, m := range members {
			m.convs = append(m.convs, id)
		}
	}
	kinds := map[string]int{}
	for i, a := range users {
		b := users[(i+1)%len(users)]
		res, err := a.devices[0].client.Conversations().CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{
			Peer: &parleyv1.CreateDirectRequest_UserId{UserId: b.id},
		})
		require.NoError(t, err)
		kind := "cross-shard"
		if a.shard == b.shard {
			kind = fmt.Sprintf("shard %d", a.shard)
		}
		kinds[kind]++
		add(res.GetConversation().GetId(), fmt.Sprintf("dm %s/%s (%s)", a.name, b.name, kind), a, b)
	}
	require.Positive(t, kinds["cross-shard"], "direct conversations by shards: %v", kinds)
	require.Positive(t, kinds["shard 0"]+kinds["shard 1"], "direct conversations by shards: %v", kinds)

	var byShard [clusterShards][]*clusterUser
	for _, u := range users {
		byShard[u.shard] = append(byShard[u.shard], u)
	}
	for s, us := range byShard {
		require.GreaterOrEqual(t, len(us), (clusterGroupSize+1)/2, "users of shard %d", s)
	}
	for g := range clusterGroups {
		members := make([]*clusterUser, clusterGroupSize)
		for k := range members {
			us := byShard[k%clusterShards]
			members[k] = us[(g+k/clusterShards)%len(us)]
		}
		ids := make([]string, 0, len(members)-1)
		for _, m := range members[1:] {
			ids = append(ids, m.id)
		}
		title := fmt.Sprintf("g%d", g)
		res, err := members[0].devices[0].client.Conversations().CreateGroup(t.Context(), &parleyv1.CreateGroupRequest{Title: title, MemberIds: ids})
		require.NoError(t, err)
		add(res.GetConversation().GetId(), "group "+title, members...)
	}
	return convs
}

// traffic is every device sending, paced, to its user's conversations.
type traffic struct {
	ctx   context.Context // cancelled only when the test ends early
	abort context.CancelFunc
	stop  chan struct{} // closed: no new sends
	once  sync.Once
	wg    sync.WaitGroup // senders and their sends in flight

	mu      sync.Mutex
	phase   string // the fault under way, "" between faults
	records []sendRecord
	acked   int
	changed chan struct{} // closed and replaced on every answer
}

func startTraffic(t *testing.T, users []*clusterUser) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	tr := &traffic{ctx: ctx, abort: cancel, stop: make(chan struct{}), changed: make(chan struct{})}
	for _, u := range users {
		for i, d := range u.devices {
			// The devices of a user start on different conversations.
			convs := append(slices.Clone(u.convs[i%len(u.convs):]), u.convs[:i%len(u.convs)]...)
			tr.wg.Go(func() { tr.sender(d, convs) })
		}
	}
	// Runs before the Sessions close (cleanups run last-in first-out).
	t.Cleanup(func() {
		tr.abort()
		tr.finish()
	})
	return tr
}

// sender sends one message per tick, round-robin over convs, each with a
// fresh client_msg_id, until stop.
func (tr *traffic) sender(d *clusterDevice, convs []string) {
	tick := time.NewTicker(clusterSendInterval)
	defer tick.Stop()
	window := make(chan struct{}, clusterWindow)
	for n := 0; ; n++ {
		select {
		case <-tr.stop:
			return
		case <-tick.C:
		}
		select {
		case window <- struct{}{}:
		default:
			continue
		}
		conv, id := convs[n%len(convs)], fmt.Sprintf("%s.%d", d.name, n)
		tr.wg.Go(func() {
			defer func() { <-window }()
			ctx, cancel := context.WithTimeout(tr.ctx, clusterSendTimeout)
			defer cancel()
			ack, err := d.session.SendWithID(ctx, conv, id, text(id))
			tr.record(sendRecord{Device: d.name, DeviceID: d.id, Conv: conv, ClientMsgID: id, Ack: ack, Err: err})
		})
	}
}

func (tr *traffic) record(r sendRecord) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	r.Phase = tr.phase
	tr.records = append(tr.records, r)
	if r.Ack != nil {
		tr.acked++
	}
	close(tr.changed)
	tr.changed = make(chan struct{})
}

// setPhase names the fault under way ("" for none) for the answers that
// arrive from now on.
func (tr *traffic) setPhase(name string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.phase = name
}

// finish stops new sends and waits for the answers to those in flight.
func (tr *traffic) finish() {
	tr.once.Do(func() { close(tr.stop) })
	tr.wg.Wait()
}

func (tr *traffic) ackedCount() int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return tr.acked
}

// waitAcked waits until n sends in all were acknowledged.
func (tr *traffic) waitAcked(t *testing.T, n int, what string) {
	t.Helper()
	timeout := time.NewTimer(clusterRecovery)
	defer timeout.Stop()
	for {
		tr.mu.Lock()
		acked, answered, changed := tr.acked, len(tr.records), tr.changed
		tr.mu.Unlock()
		if acked >= n {
			return
		}
		select {
		case <-changed:
		case <-timeout.C:
			t.Fatalf("%s: %d of %d sends acknowledged (%d answered) after %v", what, acked, n, answered, clusterRecovery)
		}
	}
}

// converge waits until every device received, in each of its user's
// conversations, the newest seq the store holds, and returns the store's
// contents (each conversation's history as each member reads it). After
// clusterConverge it stops waiting; the checker then names what is missing.
func converge(t *testing.T, users []*clusterUser, convs []*clusterConv) []storedConv {
	t.Helper()
	deadline := time.Now().Add(clusterConverge)
	for {
		stored := readStore(t, convs)
		last := lastSeqs(stored)
		for _, u := range users {
			for _, d := range u.devices {
				if !d.rec.waitLast(last, u.convs, deadline) {
					t.Logf("%s has not received everything after %v", d.name, clusterConverge)
					return stored
				}
			}
		}
		// Nothing should commit after the traffic, but a send that timed
		// out at its sender may commit late: read again until stable.
		again := readStore(t, convs)
		if maps.Equal(last, lastSeqs(again)) {
			return again
		}
	}
}

// readStore reads every conversation's history as each member reads it.
func readStore(t *testing.T, convs []*clusterConv) []storedConv {
	t.Helper()
	stored := make([]storedConv, len(convs))
	for i, c := range convs {
		views := map[string][]*parleyv1.Message{}
		for _, m := range c.members {
			views[m.id] = history(t, m.devices[0].client, c.id)
		}
		stored[i] = storedConv{ID: c.id, Label: c.label, Views: views}
	}
	return stored
}

func lastSeqs(stored []storedConv) map[string]uint64 {
	last := map[string]uint64{}
	for _, c := range stored {
		for _, view := range c.Views {
			if n := len(view); n > 0 {
				last[c.ID] = max(last[c.ID], view[n-1].GetSeq())
			}
		}
	}
	return last
}

// waitLast waits until the device received seq last[c] or later of every
// conversation c of convs, or deadline passes; it reports which.
func (r *recorder) waitLast(last map[string]uint64, convs []string, deadline time.Time) bool {
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	for {
		r.mu.Lock()
		done := true
		for _, c := range convs {
			var high uint64
			for _, m := range r.msgs[c] {
				high = max(high, m.GetSeq())
			}
			done = done && high >= last[c]
		}
		changed := r.changed
		r.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-timeout.C:
			return false
		}
	}
}

func (r *recorder) syncedCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.synced
}

// log is what the device's application received, for the checker.
func (d *clusterDevice) log() deviceLog {
	l := deviceLog{Name: d.name, UserID: d.user.id, DeviceID: d.id, Messages: map[string][]*parleyv1.Message{}, Wire: d.wire.snapshot()}
	d.rec.mu.Lock()
	defer d.rec.mu.Unlock()
	for c, ms := range d.rec.msgs {
		l.Messages[c] = slices.Clone(ms)
	}
	for _, ev := range d.rec.events {
		switch ev := ev.(type) {
		case *parley.GapEvent:
			l.Gaps = append(l.Gaps, ev)
		case *parley.EpochChangedEvent:
			l.EpochChanges++
		}
	}
	return l
}

// wireCounter is a client interceptor that watches a device's Connect
// streams beneath the SDK: the deliveries (Message frames and non-duplicate
// SendAcks) the SDK's de-duplication drops as repeats, and any that arrive
// out of seq order.
type wireCounter struct {
	mu    sync.Mutex
	seen  map[string]map[uint64]bool // conversation → seqs received
	high  map[string]uint64
	stats wireStats
}

func newWireCounter() *wireCounter {
	return &wireCounter{seen: map[string]map[uint64]bool{}, high: map[string]uint64{}}
}

func (w *wireCounter) intercept(next connect.ClientFunc) connect.ClientFunc {
	return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
		stream, err := next(ctx, spec)
		if err != nil || spec.Procedure != parleyv1connect.ChatServiceConnectProcedure {
			return stream, err
		}
		return &wireStream{ClientStream: stream, w: w}, nil
	}
}

func (w *wireCounter) observe(f *parleyv1.ServerFrame) {
	m := f.GetMessage()
	if ack := f.GetSendAck(); ack != nil && !ack.GetDuplicate() {
		m = ack.GetMessage()
	}
	if m == nil {
		return
	}
	c, seq := m.GetConversationId(), m.GetSeq()
	w.mu.Lock()
	defer w.mu.Unlock()
	w.stats.Frames++
	switch {
	case w.seen[c][seq]:
		w.stats.Repeats++
	case seq < w.high[c]:
		w.stats.Behind = append(w.stats.Behind, fmt.Sprintf("conversation %s seq %d after seq %d", c, seq, w.high[c]))
	}
	if w.seen[c] == nil {
		w.seen[c] = map[uint64]bool{}
	}
	w.seen[c][seq] = true
	w.high[c] = max(w.high[c], seq)
}

func (w *wireCounter) snapshot() wireStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.stats
	s.Behind = slices.Clone(s.Behind)
	return s
}

type wireStream struct {
	connect.ClientStream
	w *wireCounter
}

func (s *wireStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if res, ok := msg.(*parleyv1.ConnectResponse); ok && err == nil {
		s.w.observe(res.GetFrame())
	}
	return err
}
