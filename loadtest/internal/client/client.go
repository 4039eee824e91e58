// Package client is the load generator's view of a Parley server, over one
// of two client stacks: the Go SDK (clients/go/parley, the Connect protocol
// over HTTP/2) or native gRPC (google.golang.org/grpc with
// go-grpc-middleware interceptors) on the same port. Both give the same
// Device, Session and Idle shapes, so scenarios do not care which runs.
//
// Every device gets its own TCP connection for its stream (as a real
// device has), dialled from the next configured loopback source address;
// registration and setup calls share one connection per server.
package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"connectrpc.com/connect/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// Transport names.
const (
	Connect = "connect"
	GRPC    = "grpc"
)

// ErrClosed is returned by Session.Send after Close.
var ErrClosed = errors.New("client: session closed")

// Credentials are a device's tokens; the same for both transports.
type Credentials = parley.Credentials

// Config configures a Transport.
type Config struct {
	// SourceAddrs are the local addresses new connections are dialled
	// from, in turn; empty lets the kernel choose (127.0.0.1 for loopback).
	SourceAddrs []netip.Addr
	// DialTimeout bounds a TCP connect; 0 means 10 s.
	DialTimeout time.Duration
	// CallTimeout bounds a unary call; 0 means 60 s.
	CallTimeout time.Duration
	// AckInterval is how often sessions flush coalesced acks (also after
	// every 64 messages); 0 means the SDK's default, 50 ms.
	AckInterval time.Duration
	// Logger receives the clients' lifecycle logs; nil discards them.
	Logger *slog.Logger
}

// Transport registers devices and opens their connections. It is safe for
// concurrent use.
type Transport interface {
	// Name is Connect or GRPC.
	Name() string
	// Register creates an account on the server (a base URL such as
	// http://127.0.0.1:8080) and returns its first device's credentials.
	Register(ctx context.Context, server, username, password string) (Credentials, error)
	// Device returns a handle on a signed-in device. With own, the device
	// gets a TCP connection of its own (for its stream); otherwise its
	// unary calls share the transport's connection to server. It does no
	// I/O.
	Device(server string, creds Credentials, own bool) (Device, error)
	// Close closes the shared connections.
	Close() error
}

// Device is one signed-in device. It is safe for concurrent use.
type Device interface {
	UserID() string
	DeviceID() string
	// Credentials returns the device's current tokens (they rotate when
	// the access token is refreshed).
	Credentials() Credentials
	CreateDirect(ctx context.Context, peerUserID string) (string, error)
	CreateGroup(ctx context.Context, title string, memberUserIDs []string) (string, error)
	// History returns up to limit messages after seq afterSeq, ascending,
	// and whether more follow.
	History(ctx context.Context, conv string, afterSeq uint64, limit uint32) ([]*parleyv1.Message, bool, error)
	// Locate returns the device's user's shard and its address ("" when
	// the server does not know it).
	Locate(ctx context.Context) (shard, shards int, address string, err error)
	// Connect starts the device's session and returns at once; Handler
	// hears of its progress. The session reconnects by itself until
	// closed. A device holds one session at a time.
	Connect(ctx context.Context, h Handler) (Session, error)
	// OpenIdle opens a bare stream and returns once catch-up is complete
	// (sync_complete), then only reads and answers nothing; the caller
	// pings it.
	OpenIdle(ctx context.Context) (Idle, error)
	// Close closes the device's own connection.
	Close() error
}

// Handler receives a session's events. The functions are called from one
// goroutine per session, in stream order; they must not block for long
// (the session stops reading meanwhile). Nil functions are skipped.
type Handler struct {
	// Message is a message handed to the application: a Message frame or
	// the device's own SendAck, after de-duplication.
	Message func(m *parleyv1.Message)
	// Gap says catch-up skipped seqs (from, to] of a conversation.
	Gap func(conv string, from, to uint64)
	// Synced marks the end of catch-up on a stream.
	Synced func()
	// Disconnected reports a lost stream; the session reconnects.
	Disconnected func(err error)
	// Repeat is a delivery the client's de-duplication dropped.
	Repeat func(conv string, seq uint64)
}

// Session is a device's live connection. It is safe for concurrent use.
type Session interface {
	// Send sends a text message with the caller's client_msg_id and waits
	// for the server's answer: the SendAck, or the refusal as an error
	// (see Code). A message whose stream breaks is resent, with the same
	// id, on the next stream.
	Send(ctx context.Context, conv, clientMsgID, text string) (*parleyv1.SendAck, error)
	// Close flushes acks, ends the stream and waits for the session's
	// goroutines. Pending sends fail.
	Close() error
}

// Idle is a stream held open and otherwise left alone.
type Idle interface {
	// Ping sends a ping frame (the server closes streams silent past its
	// heartbeat timeout). Not safe to call concurrently with itself.
	Ping() error
	// HeartbeatInterval is the server's requested ping interval.
	HeartbeatInterval() time.Duration
	// Done is closed when the stream ended; Err says why.
	Done() <-chan struct{}
	Err() error
	Close() error
}

// New returns the named transport.
func New(name string, cfg Config) (Transport, error) {
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 10 * time.Second
	}
	if cfg.CallTimeout == 0 {
		cfg.CallTimeout = 60 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.AckInterval <= 0 {
		cfg.AckInterval = 50 * time.Millisecond
	}
	switch name {
	case Connect, "":
		return newConnectTransport(cfg), nil
	case GRPC:
		return newGRPCTransport(cfg), nil
	}
	return nil, fmt.Errorf("client: unknown transport %q (want %s or %s)", name, Connect, GRPC)
}

// Code returns the Connect code name of a failed call ("unavailable",
// "resource_exhausted", ...), for either transport; "" for nil.
func Code(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, context.DeadlineExceeded):
		return connect.CodeDeadlineExceeded.String()
	case errors.Is(err, context.Canceled):
		return connect.CodeCanceled.String()
	case errors.Is(err, ErrClosed), errors.Is(err, parley.ErrClosed):
		return "closed"
	}
	if c := connect.CodeOf(err); c != connect.CodeUnknown {
		return c.String()
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return connect.Code(s.Code()).String() //nolint:gosec // gRPC and Connect share code numbers
	}
	return connect.CodeUnknown.String()
}

// Limit describes err when it is a machine limit rather than a server's
// answer: out of file descriptors, out of ephemeral ports, connection
// refused. It returns "" otherwise.
func Limit(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	switch {
	case errors.Is(err, syscall.EMFILE) || strings.Contains(msg, "too many open files"):
		return "open files limit (RLIMIT_NOFILE) reached in the load generator"
	case errors.Is(err, syscall.ENFILE) || strings.Contains(msg, "file table overflow"):
		return "system-wide open files limit reached"
	case errors.Is(err, syscall.EADDRNOTAVAIL) || strings.Contains(msg, "cannot assign requested address"):
		return "no free ephemeral port on the source address (add more with -source-addrs)"
	case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(msg, "connection refused"):
		return "server refused the TCP connection"
	case errors.Is(err, syscall.ECONNRESET) || strings.Contains(msg, "connection reset"):
		return "server reset the TCP connection"
	}
	return ""
}

// dialer dials from the configured source addresses in turn.
type dialer struct {
	cfg  Config
	next atomic.Uint64
}

func (d *dialer) netDialer() *net.Dialer {
	nd := &net.Dialer{Timeout: d.cfg.DialTimeout}
	if n := len(d.cfg.SourceAddrs); n > 0 {
		i := d.next.Add(1) - 1
		nd.LocalAddr = &net.TCPAddr{IP: d.cfg.SourceAddrs[i%uint64(n)].AsSlice()}
	}
	return nd
}

// hostPort returns the host:port of a base URL.
func hostPort(server string) (string, error) {
	u, err := url.Parse(server)
	if err != nil {
		return "", fmt.Errorf("client: server %q: %w", server, err)
	}
	if u.Host == "" {
		return "", fmt.Errorf("client: server %q: no host", server)
	}
	if u.Port() == "" {
		if u.Scheme == "https" {
			return u.Host + ":443", nil
		}
		return u.Host + ":80", nil
	}
	return u.Host, nil
}

// frames

func pingFrame(nonce uint64) *parleyv1.ClientFrame {
	return &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ping{Ping: &parleyv1.PingFrame{Nonce: nonce}}}
}

func ackFrame(conv string, seq uint64) *parleyv1.ClientFrame {
	return &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Ack{Ack: &parleyv1.AckFrame{ConversationId: conv, Seq: seq}}}
}

func sendFrame(conv, clientMsgID, text string) *parleyv1.ClientFrame {
	return &parleyv1.ClientFrame{Kind: &parleyv1.ClientFrame_Send{Send: &parleyv1.SendFrame{
		ConversationId: conv,
		ClientMsgId:    clientMsgID,
		Content:        &parleyv1.Content{Body: &parleyv1.Content_Text{Text: text}},
	}}}
}

func heartbeatOf(w *parleyv1.Welcome) time.Duration {
	if d := w.GetHeartbeatInterval().AsDuration(); d > 0 {
		return d
	}
	return 15 * time.Second
}
