package client

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/logging"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/retry"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/timeout"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
)

// Full gRPC method names of the calls the load generator makes. Only
// connect-go code is generated for Parley, so the native gRPC client calls
// these by name with the generated protobuf messages.
const (
	methodRegister     = "/parley.v1.AuthService/Register"
	methodRefresh      = "/parley.v1.AuthService/Refresh"
	methodCreateDirect = "/parley.v1.ConversationService/CreateDirect"
	methodCreateGroup  = "/parley.v1.ConversationService/CreateGroup"
	methodGetHistory   = "/parley.v1.ChatService/GetHistory"
	methodLocate       = "/parley.v1.ClusterService/Locate"
	methodConnect      = "/parley.v1.ChatService/Connect"
)

// connectStreamDesc describes ChatService.Connect: bidirectional.
var connectStreamDesc = &grpc.StreamDesc{StreamName: "Connect", ServerStreams: true, ClientStreams: true}

// refreshSkew is how long before expiry a gRPC device refreshes its access
// token.
const refreshSkew = 30 * time.Second

// grpcTransport is native gRPC (grpc-go) with go-grpc-middleware's logging,
// retry and timeout interceptors on unary calls, and logging on streams.
type grpcTransport struct {
	cfg    Config
	dialer *dialer

	mu     sync.Mutex
	shared map[string]*grpc.ClientConn // by host:port
}

func newGRPCTransport(cfg Config) *grpcTransport {
	return &grpcTransport{cfg: cfg, dialer: &dialer{cfg: cfg}, shared: map[string]*grpc.ClientConn{}}
}

func (t *grpcTransport) Name() string { return GRPC }

// dial returns a client connection to server that dials one TCP
// connection, from the next source address, on first use.
func (t *grpcTransport) dial(server string) (*grpc.ClientConn, error) {
	target, err := hostPort(server)
	if err != nil {
		return nil, err
	}
	nd := t.dialer.netDialer()
	logger := logging.LoggerFunc(func(ctx context.Context, level logging.Level, msg string, fields ...any) {
		t.cfg.Logger.Log(ctx, slog.Level(level), msg, fields...)
	})
	cc, err := grpc.NewClient("passthrough:///"+target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return nd.DialContext(ctx, "tcp", addr)
		}),
		// Outermost first: log the final outcome, retry what the server
		// could not serve for the moment, bound each attempt.
		grpc.WithChainUnaryInterceptor(
			logging.UnaryClientInterceptor(logger, logging.WithLogOnEvents(logging.FinishCall)),
			retry.UnaryClientInterceptor(
				retry.WithMax(3),
				retry.WithCodes(codes.Unavailable),
				retry.WithBackoff(retry.BackoffExponentialWithJitter(100*time.Millisecond, 0.2)),
			),
			timeout.UnaryClientInterceptor(t.cfg.CallTimeout),
		),
		// Bidirectional streams cannot be retried by the interceptor; the
		// session reconnects itself.
		grpc.WithChainStreamInterceptor(
			logging.StreamClientInterceptor(logger, logging.WithLogOnEvents(logging.FinishCall)),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("client: grpc dial %s: %w", target, err)
	}
	return cc, nil
}

func (t *grpcTransport) sharedConn(server string) (*grpc.ClientConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cc, ok := t.shared[server]; ok {
		return cc, nil
	}
	cc, err := t.dial(server)
	if err != nil {
		return nil, err
	}
	t.shared[server] = cc
	return cc, nil
}

func (t *grpcTransport) Register(ctx context.Context, server, username, password string) (Credentials, error) {
	cc, err := t.sharedConn(server)
	if err != nil {
		return Credentials{}, err
	}
	var res parleyv1.RegisterResponse
	err = cc.Invoke(ctx, methodRegister, &parleyv1.RegisterRequest{Username: username, Password: password, DeviceName: "loadtest-grpc"}, &res)
	if err != nil {
		return Credentials{}, fmt.Errorf("client: register: %w", err)
	}
	creds := Credentials{UserID: res.GetUser().GetId(), Username: res.GetUser().GetUsername(), DeviceID: res.GetDeviceId()}
	applyTokens(&creds, res.GetTokens())
	return creds, nil
}

func (t *grpcTransport) Device(server string, creds Credentials, own bool) (Device, error) {
	var cc *grpc.ClientConn
	var err error
	if own {
		cc, err = t.dial(server)
	} else {
		cc, err = t.sharedConn(server)
	}
	if err != nil {
		return nil, err
	}
	return &grpcDevice{cc: cc, own: own, creds: creds, cfg: t.cfg}, nil
}

func (t *grpcTransport) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	for k, cc := range t.shared {
		_ = cc.Close()
		delete(t.shared, k)
	}
	return nil
}

// grpcDevice is a device over native gRPC. It keeps its own tokens and
// refreshes the access token shortly before it expires, one refresh at a
// time (a refresh token works once).
type grpcDevice struct {
	cc  *grpc.ClientConn
	own bool
	cfg Config

	mu    sync.Mutex // held across a refresh
	creds Credentials
}

func (d *grpcDevice) UserID() string   { return d.Credentials().UserID }
func (d *grpcDevice) DeviceID() string { return d.Credentials().DeviceID }

func (d *grpcDevice) Credentials() Credentials {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.creds
}

// authed returns ctx carrying the access token, refreshed first if it is
// about to expire.
func (d *grpcDevice) authed(ctx context.Context) (context.Context, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.creds.AccessExpiresAt.IsZero() && time.Until(d.creds.AccessExpiresAt) < refreshSkew {
		var res parleyv1.RefreshResponse
		if err := d.cc.Invoke(ctx, methodRefresh, &parleyv1.RefreshRequest{RefreshToken: d.creds.RefreshToken}, &res); err != nil {
			return nil, fmt.Errorf("client: refresh: %w", err)
		}
		applyTokens(&d.creds, res.GetTokens())
	}
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+d.creds.AccessToken), nil
}

func (d *grpcDevice) invoke(ctx context.Context, method string, req, res proto.Message) error {
	ctx, err := d.authed(ctx)
	if err != nil {
		return err
	}
	return d.cc.Invoke(ctx, method, req, res)
}

func (d *grpcDevice) CreateDirect(ctx context.Context, peer string) (string, error) {
	var res parleyv1.CreateDirectResponse
	if err := d.invoke(ctx, methodCreateDirect, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_UserId{UserId: peer}}, &res); err != nil {
		return "", err
	}
	return res.GetConversation().GetId(), nil
}

func (d *grpcDevice) CreateGroup(ctx context.Context, title string, members []string) (string, error) {
	var res parleyv1.CreateGroupResponse
	if err := d.invoke(ctx, methodCreateGroup, &parleyv1.CreateGroupRequest{Title: title, MemberIds: members}, &res); err != nil {
		return "", err
	}
	return res.GetConversation().GetId(), nil
}

func (d *grpcDevice) History(ctx context.Context, conv string, after uint64, limit uint32) ([]*parleyv1.Message, bool, error) {
	var res parleyv1.GetHistoryResponse
	err := d.invoke(ctx, methodGetHistory, &parleyv1.GetHistoryRequest{
		ConversationId: conv,
		AnchorSeq:      after,
		Direction:      parleyv1.HistoryDirection_HISTORY_DIRECTION_AFTER,
		Limit:          limit,
	}, &res)
	if err != nil {
		return nil, false, err
	}
	return res.GetMessages(), res.GetHasMore(), nil
}

func (d *grpcDevice) Locate(ctx context.Context) (int, int, string, error) {
	var res parleyv1.LocateResponse
	if err := d.invoke(ctx, methodLocate, &parleyv1.LocateRequest{}, &res); err != nil {
		return 0, 0, "", err
	}
	return int(res.GetShard()), int(res.GetShards()), res.GetAddress(), nil
}

func (d *grpcDevice) Connect(ctx context.Context, h Handler) (Session, error) {
	return startGRPCSession(ctx, d, h), nil
}

// openStream opens a Connect stream whose context ends with cancel.
func (d *grpcDevice) openStream(ctx context.Context) (grpc.ClientStream, context.CancelFunc, error) {
	streamCtx, cancel := context.WithCancel(ctx)
	authCtx, err := d.authed(streamCtx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	cs, err := d.cc.NewStream(authCtx, connectStreamDesc, methodConnect)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return cs, cancel, nil
}

func (d *grpcDevice) OpenIdle(ctx context.Context) (Idle, error) {
	cs, cancel, err := d.openStream(context.WithoutCancel(ctx))
	if err != nil {
		return nil, err
	}
	return openIdle(ctx, grpcFrames{cs}, cancel)
}

func (d *grpcDevice) Close() error {
	if d.own {
		return d.cc.Close()
	}
	return nil
}

// grpcFrames is a Connect stream over native gRPC.
type grpcFrames struct{ cs grpc.ClientStream }

func (g grpcFrames) send(r *parleyv1.ConnectRequest) error { return g.cs.SendMsg(r) }

func (g grpcFrames) recv() (*parleyv1.ConnectResponse, error) {
	var res parleyv1.ConnectResponse
	if err := g.cs.RecvMsg(&res); err != nil {
		return nil, err
	}
	return &res, nil
}

func (g grpcFrames) closeSend() error { return g.cs.CloseSend() }

// release has nothing to do: cancelling the stream's context frees it.
func (grpcFrames) release() {}

func applyTokens(c *Credentials, t *parleyv1.Tokens) {
	c.AccessToken = t.GetAccessToken()
	c.RefreshToken = t.GetRefreshToken()
	if t.GetAccessExpiresAt() != nil {
		c.AccessExpiresAt = t.GetAccessExpiresAt().AsTime()
	}
	if t.GetRefreshExpiresAt() != nil {
		c.RefreshExpiresAt = t.GetRefreshExpiresAt().AsTime()
	}
}
