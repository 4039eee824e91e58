package client

import (
	"context"
	"net/http"
	"sync"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/clients/go/parley"
)

// connectTransport is the Go SDK over the Connect protocol (h2c).
type connectTransport struct {
	cfg    Config
	dialer *dialer
	shared *http.Client
}

func newConnectTransport(cfg Config) *connectTransport {
	t := &connectTransport{cfg: cfg, dialer: &dialer{cfg: cfg}}
	t.shared = t.httpClient()
	return t
}

// httpClient returns an HTTP/2-only client (h2c to http:// URLs) with its
// own connection pool, dialling from the next source address.
func (t *connectTransport) httpClient() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP2(true)
	nd := t.dialer.netDialer()
	return &http.Client{Transport: &http.Transport{Protocols: protocols, DialContext: nd.DialContext}}
}

func (t *connectTransport) Name() string { return Connect }

func (t *connectTransport) Register(ctx context.Context, server, username, password string) (Credentials, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.CallTimeout)
	defer cancel()
	c, err := parley.Register(ctx, server, username, password, parley.WithHTTPClient(t.shared), parley.WithDeviceName("loadtest"))
	if err != nil {
		return Credentials{}, err
	}
	return c.Credentials(), nil
}

func (t *connectTransport) Device(server string, creds Credentials, own bool) (Device, error) {
	hc := t.shared
	if own {
		hc = t.httpClient()
	}
	d := &connectDevice{hc: hc, own: own, timeout: t.cfg.CallTimeout, ackInterval: t.cfg.AckInterval, wire: &wireFilter{high: map[string]uint64{}}}
	c, err := parley.Resume(server, creds,
		parley.WithHTTPClient(hc),
		parley.WithInterceptors(d.wire.intercept),
		parley.WithLogger(t.cfg.Logger))
	if err != nil {
		return nil, err
	}
	d.client = c
	cc := connect.NewClient(connecthttp.NewTransport(hc, server), bearer(func() string { return c.Credentials().AccessToken }))
	d.cluster = parleyv1connect.NewClusterServiceClient(cc)
	return d, nil
}

func (t *connectTransport) Close() error {
	t.shared.CloseIdleConnections()
	return nil
}

type connectDevice struct {
	client      *parley.Client
	cluster     parleyv1connect.ClusterServiceClient
	hc          *http.Client
	own         bool
	timeout     time.Duration
	ackInterval time.Duration
	wire        *wireFilter
}

func (d *connectDevice) UserID() string           { return d.client.UserID() }
func (d *connectDevice) DeviceID() string         { return d.client.DeviceID() }
func (d *connectDevice) Credentials() Credentials { return d.client.Credentials() }

func (d *connectDevice) CreateDirect(ctx context.Context, peer string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	res, err := d.client.Conversations().CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: peer}})
	if err != nil {
		return "", err
	}
	return res.GetConversation().GetId(), nil
}

func (d *connectDevice) CreateGroup(ctx context.Context, title string, members []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	res, err := d.client.Conversations().CreateGroup(ctx, &parleyv1.CreateGroupRequest{Title: title, MemberIds: members})
	if err != nil {
		return "", err
	}
	return res.GetConversation().GetId(), nil
}

func (d *connectDevice) History(ctx context.Context, conv string, after uint64, limit uint32) ([]*parleyv1.Message, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	return d.client.History(ctx, conv, after, limit)
}

func (d *connectDevice) Locate(ctx context.Context) (int, int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	res, err := d.cluster.Locate(ctx, &parleyv1.LocateRequest{})
	if err != nil {
		return 0, 0, "", err
	}
	return int(res.GetShard()), int(res.GetShards()), res.GetAddress(), nil
}

func (d *connectDevice) Connect(ctx context.Context, h Handler) (Session, error) {
	d.wire.setRepeat(h.Repeat)
	s := &connectSession{
		s: d.client.Connect(ctx, parley.WithQueueSize(256),
			parley.WithBackoff(100*time.Millisecond, 5*time.Second),
			parley.WithAckInterval(d.ackInterval)),
		done: make(chan struct{}),
	}
	go s.drain(h)
	return s, nil
}

func (d *connectDevice) OpenIdle(ctx context.Context) (Idle, error) {
	streamCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stream, err := d.client.Chat().Connect(streamCtx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := stream.SendHeaders(); err != nil {
		_ = stream.Close()
		cancel()
		return nil, err
	}
	return openIdle(ctx, connectFrames{stream}, cancel)
}

func (d *connectDevice) Close() error {
	if d.own {
		d.hc.CloseIdleConnections()
	}
	return nil
}

// connectSession wraps a parley.Session, turning its events into Handler
// calls.
type connectSession struct {
	s    *parley.Session
	done chan struct{}
}

func (s *connectSession) drain(h Handler) {
	defer close(s.done)
	for ev := range s.s.Events() {
		switch e := ev.(type) {
		case *parley.MessageEvent:
			if h.Message != nil {
				h.Message(e.Message)
			}
		case *parley.GapEvent:
			if h.Gap != nil {
				h.Gap(e.ConversationID, e.FromSeq, e.ToSeq)
			}
		case *parley.SyncedEvent:
			if h.Synced != nil {
				h.Synced()
			}
		case *parley.DisconnectedEvent:
			if h.Disconnected != nil {
				h.Disconnected(e.Err)
			}
		}
	}
}

func (s *connectSession) Send(ctx context.Context, conv, clientMsgID, text string) (*parleyv1.SendAck, error) {
	return s.s.SendWithID(ctx, conv, clientMsgID, parley.Text(text))
}

func (s *connectSession) Close() error {
	err := s.s.Close()
	<-s.done
	return err
}

// connectFrames is a Connect stream over the SDK's HTTP/2 client.
type connectFrames struct {
	s parleyv1connect.ChatServiceConnectClientStream
}

func (c connectFrames) send(r *parleyv1.ConnectRequest) error    { return c.s.Send(r) }
func (c connectFrames) recv() (*parleyv1.ConnectResponse, error) { return c.s.Receive() }
func (c connectFrames) closeSend() error                         { return c.s.CloseSend() }
func (c connectFrames) release()                                 { _ = c.s.Close() }

// wireFilter watches a device's Connect streams beneath the SDK and reports
// deliveries at or below the highest seq seen before in their conversation:
// the repeats the SDK's de-duplication drops.
type wireFilter struct {
	mu     sync.Mutex
	high   map[string]uint64
	repeat func(conv string, seq uint64)
}

func (w *wireFilter) setRepeat(fn func(string, uint64)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.repeat = fn
}

func (w *wireFilter) intercept(next connect.ClientFunc) connect.ClientFunc {
	return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
		stream, err := next(ctx, spec)
		if err != nil || spec.Procedure != parleyv1connect.ChatServiceConnectProcedure {
			return stream, err
		}
		return &wireStream{ClientStream: stream, w: w}, nil
	}
}

func (w *wireFilter) observe(f *parleyv1.ServerFrame) {
	m := f.GetMessage()
	if ack := f.GetSendAck(); ack != nil && !ack.GetDuplicate() {
		m = ack.GetMessage()
	}
	if m == nil {
		return
	}
	conv, seq := m.GetConversationId(), m.GetSeq()
	w.mu.Lock()
	repeat := seq <= w.high[conv]
	w.high[conv] = max(w.high[conv], seq)
	fn := w.repeat
	w.mu.Unlock()
	if repeat && fn != nil {
		fn(conv, seq)
	}
}

type wireStream struct {
	connect.ClientStream
	w *wireFilter
}

func (s *wireStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if res, ok := msg.(*parleyv1.ConnectResponse); ok && err == nil {
		s.w.observe(res.GetFrame())
	}
	return err
}

// bearer attaches the current access token to calls the SDK does not make
// itself (ClusterService).
func bearer(token func() string) connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			ctx, info := connect.NewClientContext(ctx)
			info.RequestHeader().Set("Authorization", "Bearer "+token())
			return next(ctx, spec)
		}
	}
}
