package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// testServer is parleyd's run() in this process on a free loopback port,
// with its admin endpoints on another.
type testServer struct {
	url      string
	adminURL string // empty when started with -admin-listen ""
	cancel   context.CancelFunc
	done     chan error
}

var (
	servingLine = regexp.MustCompile(`serving on (https?://\S+)`)
	adminLine   = regexp.MustCompile(`admin endpoints on (http://\S+)`)
)

func startServer(tb testing.TB, args ...string) *testServer {
	tb.Helper()
	return startServerEnv(tb, nil, args...)
}

// startServerEnv is startServer with environment variables for run().
func startServerEnv(tb testing.TB, env map[string]string, args ...string) *testServer {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	ts := &testServer{cancel: cancel, done: make(chan error, 1)}
	args = append([]string{"-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-data-dir", tb.TempDir(), "-log-level", "warn"}, args...)
	go func() {
		err := run(ctx, args, func(k string) string { return env[k] }, pw, io.Discard)
		pw.CloseWithError(fmt.Errorf("run returned: %w", err))
		ts.done <- err
	}()
	sc := bufio.NewScanner(pr)
	for sc.Scan() {
		if m := adminLine.FindStringSubmatch(sc.Text()); m != nil {
			ts.adminURL = m[1]
		}
		if m := servingLine.FindStringSubmatch(sc.Text()); m != nil {
			ts.url = m[1]
			break
		}
	}
	require.NotEmpty(tb, ts.url, "server did not report its address: %v", sc.Err())
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	tb.Cleanup(func() { ts.stop(tb) })
	return ts
}

func (ts *testServer) stop(tb testing.TB) {
	ts.cancel()
	select {
	case err, ok := <-ts.done:
		if ok {
			require.NoError(tb, err)
			close(ts.done)
		}
	case <-time.After(30 * time.Second):
		tb.Fatal("server did not stop within 30s")
	}
}

func h2cClient() *http.Client {
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: p}}
}

// user is a signed-in device with generated clients that send its token.
type user struct {
	id, device string
	chat       parleyv1connect.ChatServiceClient
	convs      parleyv1connect.ConversationServiceClient
	auth       parleyv1connect.AuthServiceClient
	token      string
}

func bearer(token string) connect.ClientInterceptor {
	return func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			ctx, info := connect.NewClientContext(ctx)
			info.RequestHeader().Set("Authorization", "Bearer "+token)
			return next(ctx, spec)
		}
	}
}

func register(tb testing.TB, hc *http.Client, url, name string) *user {
	tb.Helper()
	authc := parleyv1connect.NewAuthServiceClient(connect.NewClient(connecthttp.NewTransport(hc, url)))
	res, err := authc.Register(tb.Context(), &parleyv1.RegisterRequest{Username: name, Password: testPassword})
	require.NoError(tb, err)
	return newUser(hc, url, res.GetUser().GetId(), res.GetDeviceId(), res.GetTokens().GetAccessToken())
}

// login signs an existing user in on a new device.
func login(tb testing.TB, hc *http.Client, url, name string) *user {
	tb.Helper()
	authc := parleyv1connect.NewAuthServiceClient(connect.NewClient(connecthttp.NewTransport(hc, url)))
	res, err := authc.Login(tb.Context(), &parleyv1.LoginRequest{Username: name, Password: testPassword})
	require.NoError(tb, err)
	return newUser(hc, url, res.GetUser().GetId(), res.GetDeviceId(), res.GetTokens().GetAccessToken())
}

const testPassword = "correct-horse-battery"

func newUser(hc *http.Client, url, id, device, token string) *user {
	c := connect.NewClient(connecthttp.NewTransport(hc, url), bearer(token))
	return &user{
		id: id, device: device, token: token,
		chat: parleyv1connect.NewChatServiceClient(c), convs: parleyv1connect.NewConversationServiceClient(c), auth: parleyv1connect.NewAuthServiceClient(c),
	}
}

// direct creates the direct conversation of a and b and returns its id.
func direct(tb testing.TB, a, b *user) string {
	tb.Helper()
	res, err := a.convs.CreateDirect(tb.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: b.id}})
	require.NoError(tb, err)
	return res.GetConversation().GetId()
}

// say sends text from u to conversation cid with clientMsgID, and
// requires it to commit.
func say(tb testing.TB, u *user, cid, clientMsgID, text string) *parleyv1.Message {
	tb.Helper()
	res, err := u.chat.SendMessage(tb.Context(), &parleyv1.SendMessageRequest{ConversationId: cid, ClientMsgId: clientMsgID,
		Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: text}}})
	require.NoError(tb, err)
	return res.GetMessage()
}

// recv reads frames until one satisfies want, failing on stream errors.
func recv(tb testing.TB, s parleyv1connect.ChatServiceConnectClientStream, want func(*parleyv1.ServerFrame) bool) *parleyv1.ServerFrame {
	tb.Helper()
	for {
		res, err := s.Receive()
		require.NoError(tb, err)
		if want(res.GetFrame()) {
			return res.GetFrame()
		}
	}
}

func TestRunServesAndShutsDownCleanly(t *testing.T) {
	// Not parallel: it counts the process's goroutines.
	before := runtime.NumGoroutine()
	ts := startServer(t, "-heartbeat-interval", "1s", "-heartbeat-timeout", "5s")
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	conv, err := alice.convs.CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_Username{Username: "bob"}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	bs, err := bob.chat.Connect(ctx)
	require.NoError(t, err)
	require.NoError(t, bs.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ping{Ping: &parleyv1.PingFrame{Nonce: 7}}}}))
	w := recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetWelcome() != nil })
	require.Equal(t, bob.id, w.GetWelcome().GetUserId())
	recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })
	recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetPong().GetNonce() == 7 })

	as, err := alice.chat.Connect(ctx)
	require.NoError(t, err)
	send := func(id, text string) {
		require.NoError(t, as.Send(&parleyv1.ConnectRequest{Frame: &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
			ConversationId: cid, ClientMsgId: id, Content: &parleyv1.Content{Body: &parleyv1.Content_Text{Text: text}},
		}}}}))
	}
	send("m1", "hello")
	ack := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetSendAck() != nil })
	require.Equal(t, uint64(1), ack.GetSendAck().GetMessage().GetSeq())
	got := recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetMessage() != nil })
	require.Equal(t, "hello", got.GetMessage().GetContent().GetText())

	// A bad frame is answered on the stream, which stays open.
	send("m2", "")
	e := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetError() != nil })
	require.Equal(t, "m2", e.GetError().GetClientMsgId())
	require.Equal(t, connect.CodeInvalidArgument.String(), e.GetError().GetCode())
	require.Contains(t, e.GetError().GetMessage(), "content.text")
	send("m1", "hello")
	dup := recv(t, as, func(f *parleyv1.ServerFrame) bool { return f.GetSendAck() != nil })
	require.True(t, dup.GetSendAck().GetDuplicate())

	// Shutdown tells connected devices to resync and ends their streams.
	ts.cancel()
	r := recv(t, bs, func(f *parleyv1.ServerFrame) bool { return f.GetResync() != nil })
	require.Contains(t, r.GetResync().GetReason(), "shutting down")
	_, err = bs.Receive()
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err))
	ts.stop(t)
	ts.stop(t) // a second stop is a no-op
	cancel()
	hc.CloseIdleConnections()
	require.Eventually(t, func() bool { return runtime.NumGoroutine() <= before+2 }, 10*time.Second, 50*time.Millisecond,
		"goroutines leaked: %d before, %d after\n%s", before, runtime.NumGoroutine(), goroutines())
}

func TestHeartbeatTimeoutClosesSilentStream(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "-heartbeat-interval", "100ms", "-heartbeat-timeout", "300ms")
	u := register(t, h2cClient(), ts.url, "carol")
	s, err := u.chat.Connect(t.Context())
	require.NoError(t, err)
	require.NoError(t, s.SendHeaders())
	recv(t, s, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })
	// Say nothing: the server must give up on the stream by itself.
	r := recv(t, s, func(f *parleyv1.ServerFrame) bool { return f.GetResync() != nil })
	require.Contains(t, r.GetResync().GetReason(), "heartbeat")
	_, err = s.Receive()
	require.Equal(t, connect.CodeDeadlineExceeded, connect.CodeOf(err))
}

func TestRevokedSessionLosesItsStream(t *testing.T) {
	t.Parallel()
	ts := startServer(t)
	u := register(t, h2cClient(), ts.url, "dave")
	s, err := u.chat.Connect(t.Context())
	require.NoError(t, err)
	require.NoError(t, s.SendHeaders())
	recv(t, s, func(f *parleyv1.ServerFrame) bool { return f.GetSyncComplete() != nil })
	_, err = u.auth.Logout(t.Context(), &parleyv1.LogoutRequest{})
	require.NoError(t, err)
	for {
		_, err = s.Receive()
		if err != nil {
			break
		}
	}
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
	_, err = u.convs.ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
}

func TestBadFlagsAreReported(t *testing.T) {
	t.Parallel()
	var stderr strings.Builder
	err := run(t.Context(), []string{"-max-group-size", "1"}, func(string) string { return "" }, io.Discard, &stderr)
	require.ErrorContains(t, err, "max_group_size")
	err = run(t.Context(), []string{"-nope"}, func(string) string { return "" }, io.Discard, &stderr)
	require.Error(t, err)
	require.NotErrorIs(t, err, context.Canceled)
}

func goroutines() string {
	buf := make([]byte, 1<<20)
	return string(buf[:runtime.Stack(buf, true)])
}
