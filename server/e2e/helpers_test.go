package e2e_test

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/clients/go/parley"
)

const password = "correct horse battery"

// user is an account with any number of signed-in devices.
type user struct {
	name    string
	id      string
	devices []*device
}

// device is one signed-in device: a Client and, once connected, a Session
// whose events a recorder drains.
type device struct {
	name    string
	client  *parley.Client
	session *parley.Session
	rec     *recorder
	resume  func()        // opens the drain gate
	drained chan struct{} // closed when the drain goroutine ends
}

// newUser registers name on the server at url and signs in devices devices in total.
func newUser(t *testing.T, url string, name string, devices int, opts ...parley.Option) *user {
	t.Helper()
	c, err := parley.Register(t.Context(), url, name, password, append([]parley.Option{parley.WithDeviceName(name + "-1")}, opts...)...)
	require.NoError(t, err)
	u := &user{name: name, id: c.UserID()}
	u.devices = append(u.devices, &device{name: name + "-1", client: c})
	for i := 2; i <= devices; i++ {
		dn := fmt.Sprintf("%s-%d", name, i)
		c, err := parley.Login(t.Context(), url, name, password, append([]parley.Option{parley.WithDeviceName(dn)}, opts...)...)
		require.NoError(t, err)
		require.Equal(t, u.id, c.UserID())
		u.devices = append(u.devices, &device{name: dn, client: c})
	}
	return u
}

// dev returns the user's i-th device (0-based).
func (u *user) dev(i int) *device { return u.devices[i] }

func (u *user) client() *parley.Client { return u.devices[0].client }

// connect opens the device's Session, drains it into a fresh recorder and
// waits for the end of catch-up. The Session is closed when the test ends.
func (d *device) connect(t *testing.T, opts ...parley.SessionOption) {
	t.Helper()
	d.connectNoWait(t, opts...)
	d.rec.waitSynced(t, 1)
}

// connectNoWait opens the Session without waiting for catch-up.
func (d *device) connectNoWait(t *testing.T, opts ...parley.SessionOption) {
	t.Helper()
	d.connectPaused(t, opts...)()
}

// connectPaused opens the Session but does not read its events until the
// returned resume is called: the application is stalled.
func (d *device) connectPaused(t *testing.T, opts ...parley.SessionOption) (resume func()) {
	t.Helper()
	opts = append([]parley.SessionOption{parley.WithBackoff(10*time.Millisecond, 250*time.Millisecond)}, opts...)
	d.session = d.client.Connect(context.Background(), opts...)
	d.rec = newRecorder(d.name)
	d.drained = make(chan struct{})
	gate := make(chan struct{})
	var once sync.Once
	d.resume = func() { once.Do(func() { close(gate) }) }
	go d.drain(d.session, d.rec, gate, d.drained)
	t.Cleanup(func() { d.disconnect(t) })
	return d.resume
}

// drain records the Session's events once gate opens, until the Session
// closes its channel. disconnect opens the gate, so it always ends.
func (d *device) drain(s *parley.Session, rec *recorder, gate <-chan struct{}, done chan struct{}) {
	defer close(done)
	<-gate
	for ev := range s.Events() {
		rec.add(ev)
	}
}

// disconnect closes the Session (flushing its acks) and waits for the
// drain goroutine. It is idempotent.
func (d *device) disconnect(t *testing.T) {
	t.Helper()
	if d.session == nil {
		return
	}
	require.NoError(t, d.session.Close())
	d.resume()
	<-d.drained
	d.session = nil
}

// recorder keeps what a Session delivered and lets tests wait for a state.
type recorder struct {
	name string

	mu      sync.Mutex
	events  []parley.Event
	msgs    map[string][]*parleyv1.Message // per conversation, in delivery order
	synced  int
	changed chan struct{} // closed and replaced on every event
}

func newRecorder(name string) *recorder {
	return &recorder{name: name, msgs: map[string][]*parleyv1.Message{}, changed: make(chan struct{})}
}

func (r *recorder) add(ev parley.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	switch ev := ev.(type) {
	case *parley.MessageEvent:
		c := ev.Message.GetConversationId()
		r.msgs[c] = append(r.msgs[c], ev.Message)
	case *parley.SyncedEvent:
		r.synced++
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitFor blocks until cond holds (evaluated under the lock on every event).
func (r *recorder) waitFor(t *testing.T, what string, cond func(r *recorder) bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		ok := cond(r)
		changed := r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			var others []string
			for _, ev := range r.events {
				if _, ok := ev.(*parley.MessageEvent); !ok {
					others = append(others, describeLast([]parley.Event{ev}))
				}
			}
			t.Fatalf("%s: timed out waiting for %s; %d events so far, last: %s; non-message events: %v", r.name, what, len(r.events), describeLast(r.events), others)
		}
	}
}

func describeLast(evs []parley.Event) string {
	if len(evs) == 0 {
		return "none"
	}
	switch ev := evs[len(evs)-1].(type) {
	case *parley.MessageEvent:
		return fmt.Sprintf("message %s/%d", ev.Message.GetConversationId(), ev.Message.GetSeq())
	case *parley.DisconnectedEvent:
		return fmt.Sprintf("disconnected: %v", ev.Err)
	default:
		return fmt.Sprintf("%T", ev)
	}
}

func (r *recorder) waitSynced(t *testing.T, n int) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("sync #%d", n), func(r *recorder) bool { return r.synced >= n })
}

// waitSeq blocks until the device saw a message of conv at seq or later.
func (r *recorder) waitSeq(t *testing.T, conv string, seq uint64) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("%s seq %d", conv, seq), func(r *recorder) bool {
		ms := r.msgs[conv]
		return len(ms) > 0 && ms[len(ms)-1].GetSeq() >= seq
	})
}

// messages returns a copy of the messages delivered for conv.
func (r *recorder) messages(conv string) []*parleyv1.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*parleyv1.Message(nil), r.msgs[conv]...)
}

// find returns the first event for which match holds.
func find[T parley.Event](r *recorder, match func(T) bool) (T, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.events {
		if e, ok := ev.(T); ok && match(e) {
			return e, true
		}
	}
	var zero T
	return zero, false
}

// waitEvent blocks until an event of type T matching match arrived.
func waitEvent[T parley.Event](t *testing.T, r *recorder, what string, match func(T) bool) T {
	t.Helper()
	var got T
	r.waitFor(t, what, func(r *recorder) bool {
		for _, ev := range r.events {
			if e, ok := ev.(T); ok && match(e) {
				got = e
				return true
			}
		}
		return false
	})
	return got
}

// history pages a conversation's whole visible history as the client sees it.
// Pages hold 50 messages: 200 messages of up to 64 KiB each would exceed the
// client's default 4 MiB read limit.
func history(t *testing.T, c *parley.Client, conv string) []*parleyv1.Message {
	t.Helper()
	var all []*parleyv1.Message
	var after uint64
	for {
		page, more, err := c.History(t.Context(), conv, after, 50)
		require.NoError(t, err)
		all = append(all, page...)
		if !more || len(page) == 0 {
			return all
		}
		after = page[len(page)-1].GetSeq()
	}
}

// requireSameMessages asserts two message lists are equal (by proto).
func requireSameMessages(t *testing.T, want, got []*parleyv1.Message, msgAndArgs ...any) {
	t.Helper()
	require.Equal(t, seqsOf(want), seqsOf(got), msgAndArgs...)
	for i := range want {
		require.True(t, proto.Equal(want[i], got[i]), "message %d differs:\nwant %v\ngot  %v", want[i].GetSeq(), want[i], got[i])
	}
}

func seqsOf(ms []*parleyv1.Message) []uint64 {
	seqs := make([]uint64, len(ms))
	for i, m := range ms {
		seqs[i] = m.GetSeq()
	}
	return seqs
}

// requireContiguous asserts ms are seqs first, first+1, ... without a gap or
// a repeat.
func requireContiguous(t *testing.T, ms []*parleyv1.Message, first uint64, msgAndArgs ...any) {
	t.Helper()
	want := make([]uint64, len(ms))
	for i := range want {
		want[i] = first + uint64(i)
	}
	require.Equal(t, want, seqsOf(ms), msgAndArgs...)
}

func text(s string) *parleyv1.Content { return parley.Text(s) }

func createDirect(t *testing.T, a, b *user) string {
	t.Helper()
	res, err := a.client().Conversations().CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{
		Peer: &parleyv1.CreateDirectRequest_UserId{UserId: b.id},
	})
	require.NoError(t, err)
	return res.GetConversation().GetId()
}

func createGroup(t *testing.T, owner *user, title string, members ...*user) string {
	t.Helper()
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.id
	}
	res, err := owner.client().Conversations().CreateGroup(t.Context(), &parleyv1.CreateGroupRequest{Title: title, MemberIds: ids})
	require.NoError(t, err)
	return res.GetConversation().GetId()
}

// lastSeq returns the conversation's newest seq as the user sees it.
func lastSeq(t *testing.T, u *user, conv string) uint64 {
	t.Helper()
	res, err := u.client().Conversations().GetConversation(t.Context(), &parleyv1.GetConversationRequest{ConversationId: conv})
	require.NoError(t, err)
	return res.GetConversation().GetLastSeq()
}

// rawClients are generated clients without the SDK: no token attached unless
// the caller sets one, no refresh.
type rawClients struct {
	auth parleyv1connect.AuthServiceClient
	chat parleyv1connect.ChatServiceClient
	conv parleyv1connect.ConversationServiceClient
}

func newRawClients(t *testing.T, baseURL string) rawClients {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: protocols}}
	t.Cleanup(hc.CloseIdleConnections)
	cc := connect.NewClient(connecthttp.NewTransport(hc, baseURL))
	return rawClients{
		auth: parleyv1connect.NewAuthServiceClient(cc),
		chat: parleyv1connect.NewChatServiceClient(cc),
		conv: parleyv1connect.NewConversationServiceClient(cc),
	}
}

// withBearer returns a context whose calls carry token ("" sends none).
func withBearer(ctx context.Context, token string) context.Context {
	ctx, info := connect.NewClientContext(ctx)
	if token != "" {
		info.RequestHeader().Set("Authorization", "Bearer "+token)
	}
	return ctx
}
