// Package server is Parley's Connect server: the ChatService and
// ConversationService handlers, the device sessions behind the streams, and
// the assembly of every service (auth, health, reflection) on one
// http.Handler that speaks Connect, gRPC and gRPC-Web.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"buf.build/go/protovalidate"
	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"connectrpc.com/grpcreflect/v2"
	"connectrpc.com/validate"

	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/engine"
	"github.com/parley-im/parley/server/hub"
	"github.com/parley-im/parley/server/internal/ratelimit"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/server/shard"
	"github.com/parley-im/parley/storage"
)

// compressMinBytes is the smallest response worth gzipping.
const compressMinBytes = 4096

// Config holds the messaging rules.
type Config struct {
	// RecallWindow is how long a sender may recall their own message.
	// Group owners and admins may recall any message at any time.
	RecallWindow time.Duration `yaml:"recall_window" env:"RECALL_WINDOW"`
	// MaxGroupSize bounds a group's members, owner included.
	MaxGroupSize int `yaml:"max_group_size" env:"MAX_GROUP_SIZE"`
	// HeartbeatInterval is how often clients should ping (and how often
	// Subscribe streams get a keep-alive).
	HeartbeatInterval time.Duration `yaml:"heartbeat_interval" env:"HEARTBEAT_INTERVAL"`
	// HeartbeatTimeout closes a Connect stream silent for this long.
	HeartbeatTimeout time.Duration `yaml:"heartbeat_timeout" env:"HEARTBEAT_TIMEOUT"`
	// MaxInflightSends bounds the sends of one stream awaiting commit;
	// beyond it the server stops reading that stream until commits return.
	MaxInflightSends int `yaml:"max_inflight_sends" env:"MAX_INFLIGHT_SENDS"`
	// SendRate is how many messages per second one device may send,
	// sustained, over its streams and SendMessage together. A send beyond
	// it is refused with ResourceExhausted: an Error frame on a stream
	// (which stays open), an error with a google.rpc.RetryInfo detail on
	// SendMessage. 0 disables the limit. Default 200.
	SendRate int `yaml:"send_rate" env:"SEND_RATE"`
	// SendBurst is how many messages a device may send at once above
	// SendRate. At least 1 when SendRate is set. Default 1000.
	SendBurst int `yaml:"send_burst" env:"SEND_BURST"`
}

// DefaultConfig returns the defaults: 2-minute recall window, groups of up
// to 1,000, 30 s heartbeats with a 90 s timeout, 256 sends in flight per
// stream, 200 messages/s per device with bursts of 1,000.
func DefaultConfig() Config {
	return Config{
		RecallWindow:      2 * time.Minute,
		MaxGroupSize:      1000,
		HeartbeatInterval: 30 * time.Second,
		HeartbeatTimeout:  90 * time.Second,
		MaxInflightSends:  256,
		SendRate:          200,
		SendBurst:         1000,
	}
}

// Validate reports the first invalid setting.
func (c Config) Validate() error {
	switch {
	case c.RecallWindow < 0:
		return errors.New("recall_window must not be negative")
	case c.MaxGroupSize < 2:
		return errors.New("max_group_size must be at least 2")
	case c.HeartbeatInterval <= 0:
		return errors.New("heartbeat_interval must be positive")
	case c.HeartbeatTimeout <= c.HeartbeatInterval:
		return errors.New("heartbeat_timeout must exceed heartbeat_interval")
	case c.MaxInflightSends < 1:
		return errors.New("max_inflight_sends must be at least 1")
	case c.SendRate < 0:
		return errors.New("send_rate must not be negative")
	case c.SendRate > 0 && c.SendBurst < 1:
		return errors.New("send_burst must be at least 1 when send_rate is set")
	}
	return nil
}

// Store is what the handlers read directly; writes that take a seq go
// through the engine.
type Store interface {
	Epoch(ctx context.Context) (string, error)
	GetUser(ctx context.Context, id string) (storage.User, error)
	GetUserByUsername(ctx context.Context, username string) (storage.User, error)
	GetUsers(ctx context.Context, ids []string) ([]storage.User, error)
	GetOrCreateDirect(ctx context.Context, id, a, b string, now time.Time) (storage.Conversation, bool, error)
	GetConversation(ctx context.Context, id string) (storage.Conversation, error)
	GetMember(ctx context.Context, conversationID, userID string) (storage.Member, error)
	ListMembers(ctx context.Context, conversationID string) ([]storage.Member, error)
	ListConversations(ctx context.Context, userID string) ([]storage.ConversationSummary, error)
	DirectPeers(ctx context.Context, userID string) ([]string, error)
	GetMessage(ctx context.Context, conversationID string, seq uint64) (storage.Message, error)
	History(ctx context.Context, q storage.HistoryQuery) ([]storage.Message, bool, error)
	SearchMessages(ctx context.Context, q storage.SearchQuery) ([]storage.SearchHit, bool, error)
}

// Deps are the parts main builds and hands over.
type Deps struct {
	Store  Store
	Engine *engine.Engine
	Hub    *hub.Hub
	// Auth is the AuthService implementation.
	Auth parleyv1connect.AuthServiceHandler
	// Authenticate is the interceptor that checks access tokens and puts
	// the caller's identity in the context.
	Authenticate connect.ServerInterceptor
	// Health answers grpc.health.v1.
	Health healthv1connect.HealthHandler
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Layout is this process's shard; the zero value means a single node.
	Layout shard.Layout
	// Router carries presence frames to users wherever they are
	// connected; nil means Hub (a single node).
	Router engine.Router
	// Presence says who is online; nil means the devices connected to Hub
	// (a single node).
	Presence Presence
	// Metrics records the streams and sends (Stream) and the send rate
	// limit's refusals (RateLimit); nil records nothing.
	Metrics *metrics.Metrics
	// Interceptors wrap every procedure, outermost first, outside the
	// server's own (panic recovery, authentication, validation): tracing
	// and RPC metrics, which must see every call, refused ones included.
	Interceptors []connect.ServerInterceptor
	// Media stores uploads for image and file messages; nil leaves
	// MediaService out, and such messages are refused.
	Media *MediaDeps
	// Fallback serves every request no procedure claims: the web app.
	// Nil answers them 404.
	Fallback http.Handler
	// Admin serves AdminService (analytics for admins); nil leaves it
	// out.
	Admin *AdminDeps
	// Archive searches the archived history below the store's window
	// (server/history.Reader); nil searches the store alone. (History
	// pages cross the window through Store: main hands over a Store whose
	// History is the Reader's.)
	Archive ArchiveSearch
	// Events takes the connection_opened and connection_closed events of
	// the streams; nil records none. (The engine and the hub record the
	// message events: engine.SetEvents, hub.SetEvents.)
	Events EventRecorder
}

// ArchiveSearch finds messages in the archived history, the part of each
// conversation older than the store's window, as the store's
// SearchMessages does in the window (the same query, order and cursor).
type ArchiveSearch interface {
	SearchArchived(ctx context.Context, q storage.SearchQuery) ([]storage.SearchHit, bool, error)
}

// Presence tracks which users have a device online. On one node the hub
// knows; in a cluster a shared store does (server/route.Presence).
type Presence interface {
	Connected(ctx context.Context, userID, deviceID string)
	// Disconnected reports whether the user still has a device online.
	Disconnected(ctx context.Context, userID, deviceID string) (stillOnline bool)
	Online(ctx context.Context, userIDs []string) map[string]bool
}

// hubPresence is the Presence of a single node.
type hubPresence struct{ hub *hub.Hub }

func (hubPresence) Connected(context.Context, string, string) {}

func (p hubPresence) Disconnected(_ context.Context, userID, _ string) bool {
	return p.hub.Online(userID)
}

func (p hubPresence) Online(_ context.Context, userIDs []string) map[string]bool {
	online := make(map[string]bool, len(userIDs))
	for _, u := range userIDs {
		online[u] = p.hub.Online(u)
	}
	return online
}

// Server serves every Parley service. Create it with New; it is safe for
// concurrent use.
type Server struct {
	cfg       Config
	store     Store
	engine    *engine.Engine
	hub       *hub.Hub
	logger    *slog.Logger
	now       func() time.Time
	validator protovalidate.Validator
	handler   http.Handler
	layout    shard.Layout
	router    engine.Router
	presence  Presence
	// sends is the per-device send limit; nil when disabled.
	sends *ratelimit.Keyed
	// streams and limits record into metrics; nil records nothing.
	streams *metrics.Stream
	limits  *metrics.RateLimit
	// events takes analytics events; nil records none.
	events EventRecorder
	// archive searches below the store's window; nil when there is none.
	archive ArchiveSearch

	// media serves MediaService and the signed media URLs; nil when the
	// server has no media storage.
	media *mediaService

	// sessions counts the goroutines of live streams, including readers
	// blocked on the network that end only when their handler returns.
	sessions     sync.WaitGroup
	shuttingDown atomic.Bool
}

// New assembles the server. It does not listen: serve Handler() with an
// http.Server.
func New(cfg Config, d Deps) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("server: config: %w", err)
	}
	v, err := protovalidate.New()
	if err != nil {
		return nil, fmt.Errorf("server: validator: %w", err)
	}
	s := &Server{
		cfg:       cfg,
		store:     d.Store,
		engine:    d.Engine,
		hub:       d.Hub,
		logger:    d.Logger,
		now:       d.Now,
		validator: v,
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.sends = newSendLimiter(cfg)
	if d.Metrics != nil {
		s.streams, s.limits = d.Metrics.Stream, d.Metrics.RateLimit
	}
	s.router, s.presence = d.Router, d.Presence
	s.events = d.Events
	s.archive = d.Archive
	if s.router == nil {
		s.router = d.Hub
	}
	if s.presence == nil {
		s.presence = hubPresence{hub: d.Hub}
	}
	s.layout = d.Layout
	if s.layout.Shards == 0 {
		s.layout = shard.Single()
	}
	if err := s.layout.Validate(); err != nil {
		return nil, fmt.Errorf("server: shard layout: %w", err)
	}
	interceptors := append(slices.Clip(d.Interceptors),
		recoverInterceptor(d.Logger),
		d.Authenticate,
		// Stream frames are validated one by one in the session, so a bad
		// frame is answered with an Error frame instead of ending the
		// stream.
		skipProcedures(validate.NewServerInterceptor(validate.WithValidator(v)), parleyv1connect.ChatServiceConnectProcedure),
	)
	cs := connect.NewServer(interceptors...)
	parleyv1connect.RegisterAuthServiceHandler(cs, d.Auth)
	parleyv1connect.RegisterConversationServiceHandler(cs, &conversationService{s: s})
	parleyv1connect.RegisterChatServiceHandler(cs, &chatService{s: s})
	parleyv1connect.RegisterClusterServiceHandler(cs, &clusterService{s: s})
	if d.Media != nil {
		if s.media, err = newMediaService(s, d.Media); err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		parleyv1connect.RegisterMediaServiceHandler(cs, s.media)
	}
	if d.Admin != nil {
		as, err := newAdminService(s, d.Admin)
		if err != nil {
			return nil, fmt.Errorf("server: %w", err)
		}
		parleyv1connect.RegisterAdminServiceHandler(cs, as)
	}
	healthv1connect.RegisterHealthHandler(cs, d.Health)
	grpcreflect.Register(cs)
	mux := http.NewServeMux()
	// Chat frames are small: compressing each one costs more CPU than the
	// bytes it saves, so only large responses (history pages) are
	// compressed.
	connecthttp.Mount(mux, cs, connecthttp.WithCompressMinBytes(compressMinBytes))
	if s.media != nil {
		mux.Handle("GET /media/", s.media)
	}
	if d.Fallback != nil {
		// The most specific pattern wins, so procedures keep their paths.
		mux.Handle("/", d.Fallback)
	}
	s.handler = mux
	return s, nil
}

// Handler is the http.Handler serving every procedure. Serve it over
// HTTP/2 (h2c on loopback, TLS elsewhere) and HTTP/1.1.
func (s *Server) Handler() http.Handler { return s.handler }

// CloseStreams tells every connected device to reconnect elsewhere and
// waits (up to ctx) until their sessions have ended and flushed their
// acks. Call it before shutting the http.Server down, which otherwise
// waits for the streams forever. A second call is a no-op.
func (s *Server) CloseStreams(ctx context.Context) error {
	s.shuttingDown.Store(true)
	s.hub.CloseAll(hub.ErrShutdown)
	done := make(chan struct{})
	go func() {
		s.sessions.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recoverInterceptor turns a handler panic into an Internal error instead
// of a dead process, and logs it.
func recoverInterceptor(logger *slog.Logger) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) (err error) {
			defer func() {
				if r := recover(); r != nil {
					logger.ErrorContext(ctx, "handler panicked", "procedure", spec.Procedure, "err", fmt.Sprint(r))
					err = connect.NewError(connect.CodeInternal, "internal error")
				}
			}()
			return next(ctx, spec, stream)
		}
	}
}

// skipProcedures applies in to every procedure except the named ones.
func skipProcedures(in connect.ServerInterceptor, procedures ...string) connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		wrapped := in(next)
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			for _, p := range procedures {
				if strings.EqualFold(spec.Procedure, p) {
					return next(ctx, spec, stream)
				}
			}
			return wrapped(ctx, spec, stream)
		}
	}
}
