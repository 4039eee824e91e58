package parley

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// waitTimeout bounds every wait in these tests; nothing sleeps.
const waitTimeout = 10 * time.Second

// fakeServer is a scripted ChatService and AuthService on a loopback h2c
// listener. Each Connect stream is handed to the test as a fakeConn, which the
// test drives frame by frame.
type fakeServer struct {
	parleyv1connect.UnimplementedChatServiceHandler
	parleyv1connect.UnimplementedAuthServiceHandler

	url   string
	conns chan *fakeConn

	epoch            atomic.Pointer[string]
	heartbeat        time.Duration
	heartbeatTimeout time.Duration
	silent           bool // do not answer pings

	mu         sync.Mutex
	validToken string
	refreshes  int
	refreshGen int
}

// fakeConn is one server-side Connect stream.
type fakeConn struct {
	out  chan *parleyv1.ServerFrame
	end  chan error
	recv chan *parleyv1.ClientFrame // everything the client sent, in order
	auth string
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	f := &fakeServer{conns: make(chan *fakeConn, 16), heartbeat: time.Hour, heartbeatTimeout: 3 * time.Hour, validToken: "access-0"}
	f.setEpoch("epoch-1")
	server := connect.NewServer()
	parleyv1connect.RegisterChatServiceHandler(server, f)
	parleyv1connect.RegisterAuthServiceHandler(server, f)
	mux := http.NewServeMux()
	connecthttp.Mount(mux, server)
	srv := httptest.NewUnstartedServer(mux)
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = protocols
	srv.Start()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

func (f *fakeServer) setEpoch(e string) { f.epoch.Store(&e) }

func (f *fakeServer) setValidToken(tok string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.validToken = tok
}

func (f *fakeServer) refreshCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshes
}

func (f *fakeServer) Connect(ctx context.Context, stream parleyv1connect.ChatServiceConnectServerStream) error {
	info, _ := connect.CallInfoForServerContext(ctx)
	auth := info.RequestHeader().Get("Authorization")
	f.mu.Lock()
	valid := f.validToken
	f.mu.Unlock()
	if auth != "Bearer "+valid {
		return connect.NewError(connect.CodeUnauthenticated, "access token expired")
	}
	c := &fakeConn{
		out:  make(chan *parleyv1.ServerFrame, 64),
		end:  make(chan error, 1),
		recv: make(chan *parleyv1.ClientFrame, 1024),
		auth: auth,
	}
	welcome := &parleyv1.Welcome{
		UserId:            "u1",
		DeviceId:          "d1",
		Epoch:             *f.epoch.Load(),
		HeartbeatInterval: durationpb.New(f.heartbeat),
		HeartbeatTimeout:  durationpb.New(f.heartbeatTimeout),
		ServerTime:        timestamppb.Now(),
	}
	if err := stream.Send(&parleyv1.ConnectResponse{Frame: &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Welcome{Welcome: welcome}}}); err != nil {
		return err
	}
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		for {
			req, err := stream.Receive()
			if err != nil {
				return
			}
			if p := req.GetFrame().GetPing(); p != nil && !f.silent {
				c.out <- &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Pong{Pong: &parleyv1.Pong{Nonce: p.GetNonce()}}}
			}
			c.recv <- req.GetFrame()
		}
	}()
	f.conns <- c
	for {
		select {
		case frame := <-c.out:
			if err := stream.Send(&parleyv1.ConnectResponse{Frame: frame}); err != nil {
				return err
			}
		case err := <-c.end:
			return err
		case <-readDone:
			// The client closed its side: finish like a real server would.
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (f *fakeServer) Refresh(_ context.Context, req *parleyv1.RefreshRequest) (*parleyv1.RefreshResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if req.GetRefreshToken() != refreshTokenOf(f.refreshGen) {
		return nil, connect.NewError(connect.CodeUnauthenticated, "refresh token reused; session revoked")
	}
	f.refreshes++
	f.refreshGen++
	f.validToken = accessTokenOf(f.refreshGen)
	return &parleyv1.RefreshResponse{Tokens: &parleyv1.Tokens{
		AccessToken:     f.validToken,
		AccessExpiresAt: timestamppb.New(time.Now().Add(time.Hour)),
		RefreshToken:    refreshTokenOf(f.refreshGen),
	}}, nil
}

func accessTokenOf(gen int) string  { return "access-" + itoa(gen) }
func refreshTokenOf(gen int) string { return "refresh-" + itoa(gen) }

func itoa(n int) string { return strconv.Itoa(n) }

// client returns a Client signed in to f with generation-0 tokens.
func (f *fakeServer) client(t *testing.T, opts ...Option) (*Client, *http.Client) {
	t.Helper()
	hc := newH2CClient()
	t.Cleanup(hc.CloseIdleConnections)
	c, err := Resume(f.url, Credentials{
		UserID:          "u1",
		DeviceID:        "d1",
		AccessToken:     accessTokenOf(0),
		AccessExpiresAt: time.Now().Add(time.Hour),
		RefreshToken:    refreshTokenOf(0),
	}, append([]Option{WithHTTPClient(hc)}, opts...)...)
	require.NoError(t, err)
	return c, hc
}

func (f *fakeServer) nextConn(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case c := <-f.conns:
		return c
	case <-time.After(waitTimeout):
		t.Fatal("no stream opened")
		return nil
	}
}

func (c *fakeConn) send(frames ...*parleyv1.ServerFrame) {
	for _, f := range frames {
		c.out <- f
	}
}

// next returns the next client frame that is not a ping.
func (c *fakeConn) next(t *testing.T) *parleyv1.ClientFrame {
	t.Helper()
	timeout := time.After(waitTimeout)
	for {
		select {
		case f := <-c.recv:
			if f.GetPing() != nil {
				continue
			}
			return f
		case <-timeout:
			t.Fatal("no client frame")
			return nil
		}
	}
}

func msgFrame(conv string, seq uint64) *parleyv1.ServerFrame {
	return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_Message{Message: &parleyv1.Message{
		Id: conv + "-" + itoa(int(seq)), ConversationId: conv, Seq: seq, Kind: parleyv1.MessageKind_MESSAGE_KIND_TEXT, Content: Text("m"),
	}}}
}

func syncFrame() *parleyv1.ServerFrame {
	return &parleyv1.ServerFrame{Kind: &parleyv1.ServerFrame_SyncComplete{SyncComplete: &parleyv1.SyncComplete{}}}
}

// nextEvent returns the session's next event.
func nextEvent(t *testing.T, s *Session) Event {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		require.True(t, ok, "events channel closed")
		return ev
	case <-time.After(waitTimeout):
		t.Fatal("no event")
		return nil
	}
}

// nextOf skips events until one of type T arrives.
func nextOf[T Event](t *testing.T, s *Session) T {
	t.Helper()
	for {
		if ev, ok := nextEvent(t, s).(T); ok {
			return ev
		}
	}
}

// messages reads n message events and returns their (conversation, seq).
func messages(t *testing.T, s *Session, n int) []string {
	t.Helper()
	var got []string
	for len(got) < n {
		if m, ok := nextEvent(t, s).(*MessageEvent); ok {
			got = append(got, m.Message.GetConversationId()+"/"+itoa(int(m.Message.GetSeq())))
		}
	}
	return got
}

var errFakeDrop = errors.New("dropped by the test")

func (c *fakeConn) drop() { c.end <- connect.NewError(connect.CodeUnavailable, errFakeDrop.Error()) }
