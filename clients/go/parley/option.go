package parley

import (
	"log/slog"
	"net/http"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
)

// Option configures a [Client]. Options are applied in order; a later option
// overrides an earlier one of the same kind.
type Option interface {
	applyToClient(*clientConfig)
}

// SessionOption configures a [Session].
type SessionOption interface {
	applyToSession(*sessionConfig)
}

// WithHTTPClient sets the HTTP client used for every call. The default speaks
// HTTP/2 over cleartext (h2c), which is what parleyd serves; a client given
// here must do the same for [Client.Connect] to work over http:// URLs.
func WithHTTPClient(c *http.Client) Option {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.httpClient = c })
}

// WithTransportOptions passes options to connecthttp.NewTransport, e.g.
// connecthttp.WithGRPC() or connecthttp.WithSendMaxBytes.
func WithTransportOptions(opts ...connecthttp.Option) Option {
	return clientOptionFunc(func(cfg *clientConfig) {
		cfg.transportOptions = append(cfg.transportOptions, opts...)
	})
}

// WithInterceptors adds client interceptors. They run inside the SDK's
// authentication interceptor, so they see the Authorization header.
func WithInterceptors(interceptors ...connect.ClientInterceptor) Option {
	return clientOptionFunc(func(cfg *clientConfig) {
		cfg.interceptors = append(cfg.interceptors, interceptors...)
	})
}

// WithDeviceName labels the device session created by [Register] or [Login]
// ("laptop", "cli"). It has no effect on [Resume].
func WithDeviceName(name string) Option {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.deviceName = name })
}

// WithDisplayName sets the display name of an account created by [Register].
func WithDisplayName(name string) Option {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.displayName = name })
}

// WithCredentialsHook registers fn to be called with the new credentials after
// every successful token refresh, so an application can persist them: the
// refresh token it held before is then spent. fn runs while refreshes are
// serialized, so it sees refreshes in order; it must not call back into the
// Client.
func WithCredentialsHook(fn func(Credentials)) Option {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.onRefresh = fn })
}

// WithRefreshSkew sets how long before the access token's expiry the Client
// refreshes it proactively. The default is 30s; zero disables proactive
// refresh (the Client still refreshes when the server reports expiry).
func WithRefreshSkew(d time.Duration) Option {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.refreshSkew = d })
}

// WithLogger sets the logger for lifecycle events (reconnects, refreshes).
// The default discards everything. Message bodies and tokens are never logged.
func WithLogger(l *slog.Logger) Option {
	return clientOptionFunc(func(cfg *clientConfig) { cfg.logger = l })
}

// WithBackoff sets the reconnect backoff: the n-th consecutive failed attempt
// waits a uniformly random duration in [0, min(max, base·2ⁿ)) ("full
// jitter"). Defaults: base 100ms, max 10s. Non-positive values keep the
// default.
func WithBackoff(base, max time.Duration) SessionOption {
	return sessionOptionFunc(func(cfg *sessionConfig) {
		if base > 0 {
			cfg.backoff.base = base
		}
		if max > 0 {
			cfg.backoff.max = max
		}
	})
}

// WithAckInterval sets how often the Session flushes coalesced acks (the
// highest seq handed to the application per conversation). Default 50ms.
func WithAckInterval(d time.Duration) SessionOption {
	return sessionOptionFunc(func(cfg *sessionConfig) {
		if d > 0 {
			cfg.ackInterval = d
		}
	})
}

// WithAckBatch flushes acks early once n messages were handed to the
// application since the last flush. Default 64.
func WithAckBatch(n int) SessionOption {
	return sessionOptionFunc(func(cfg *sessionConfig) {
		if n > 0 {
			cfg.ackBatch = n
		}
	})
}

// WithQueueSize bounds the number of received events waiting for the
// application. When it is full the Session stops reading its stream, and the
// server eventually drops the stream as a slow consumer (the Session then
// reconnects and catches up from its cursors). Default 1024.
func WithQueueSize(n int) SessionOption {
	return sessionOptionFunc(func(cfg *sessionConfig) {
		if n > 0 {
			cfg.queueSize = n
		}
	})
}

// WithEpoch seeds the epoch the application kept from an earlier run (see
// [Session.Epoch]). If the server reports a different one, the Session emits
// an [EpochChangedEvent].
func WithEpoch(epoch string) SessionOption {
	return sessionOptionFunc(func(cfg *sessionConfig) { cfg.epoch = epoch })
}

// WithHandshakeTimeout bounds how long the Session waits for the server's
// Welcome after opening a stream. Default 10s.
func WithHandshakeTimeout(d time.Duration) SessionOption {
	return sessionOptionFunc(func(cfg *sessionConfig) {
		if d > 0 {
			cfg.handshakeTimeout = d
		}
	})
}

type clientConfig struct {
	httpClient       *http.Client
	transportOptions []connecthttp.Option
	interceptors     []connect.ClientInterceptor
	deviceName       string
	displayName      string
	onRefresh        func(Credentials)
	refreshSkew      time.Duration
	logger           *slog.Logger
}

func newClientConfig(opts []Option) *clientConfig {
	cfg := &clientConfig{refreshSkew: 30 * time.Second}
	for _, opt := range opts {
		opt.applyToClient(cfg)
	}
	if cfg.httpClient == nil {
		cfg.httpClient = newH2CClient()
	}
	if cfg.logger == nil {
		cfg.logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

type sessionConfig struct {
	backoff          backoff
	ackInterval      time.Duration
	ackBatch         int
	queueSize        int
	epoch            string
	handshakeTimeout time.Duration
}

func newSessionConfig(opts []SessionOption) *sessionConfig {
	cfg := &sessionConfig{
		backoff:          backoff{base: 100 * time.Millisecond, max: 10 * time.Second},
		ackInterval:      50 * time.Millisecond,
		ackBatch:         64,
		queueSize:        1024,
		handshakeTimeout: 10 * time.Second,
	}
	for _, opt := range opts {
		opt.applyToSession(cfg)
	}
	if cfg.backoff.max < cfg.backoff.base {
		cfg.backoff.max = cfg.backoff.base
	}
	return cfg
}

type clientOptionFunc func(*clientConfig)

func (f clientOptionFunc) applyToClient(cfg *clientConfig) { f(cfg) }

type sessionOptionFunc func(*sessionConfig)

func (f sessionOptionFunc) applyToSession(cfg *sessionConfig) { f(cfg) }

// newH2CClient returns an HTTP client that speaks HTTP/2 with prior knowledge
// to http:// URLs and HTTP/2 over TLS to https:// ones. HTTP/1 is left out on
// purpose: with it enabled, net/http would use HTTP/1.1 for http:// URLs, and
// bidirectional streams need HTTP/2.
func newH2CClient() *http.Client {
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	protocols.SetHTTP2(true)
	transport := &http.Transport{Protocols: protocols}
	return &http.Client{Transport: transport}
}
