package parley

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect/v2"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// refreshTimeout bounds one Refresh call. The call runs detached from the
// caller's context: abandoning a refresh the server may already have
// committed would leave the Client holding a spent refresh token, and
// presenting it again would revoke the session.
const refreshTimeout = 30 * time.Second

// ErrRevoked reports that the device's session can no longer be refreshed:
// the refresh token expired or was revoked (logout, or a reused refresh token).
// The application must log in again. Errors wrapping it also carry the
// server's Connect error, so connect.CodeOf reports CodeUnauthenticated.
var ErrRevoked = errors.New("parley: device session revoked or expired")

// Credentials is what a device keeps to stay signed in. The zero value is not
// usable. It is safe to persist (it holds secrets: store it with 0600
// permissions) and to pass to [Resume].
type Credentials struct {
	UserID           string    `json:"user_id"`
	Username         string    `json:"username,omitempty"`
	DeviceID         string    `json:"device_id"`
	AccessToken      string    `json:"access_token"`
	AccessExpiresAt  time.Time `json:"access_expires_at"`
	RefreshToken     string    `json:"refresh_token"`
	RefreshExpiresAt time.Time `json:"refresh_expires_at"`
}

// tokenManager holds a device's credentials and refreshes them, one refresh at
// a time.
type tokenManager struct {
	auth      parleyv1connect.AuthServiceClient // no auth interceptor
	skew      time.Duration
	onRefresh func(Credentials)
	logger    *slog.Logger
	now       func() time.Time

	// sem serializes refreshes; a channel rather than a mutex so waiters can
	// give up when their context ends.
	sem chan struct{}

	mu      sync.Mutex // guards the fields below
	creds   Credentials
	revoked error
}

func newTokenManager(auth parleyv1connect.AuthServiceClient, creds Credentials, cfg *clientConfig) *tokenManager {
	return &tokenManager{
		auth:      auth,
		skew:      cfg.refreshSkew,
		onRefresh: cfg.onRefresh,
		logger:    cfg.logger,
		now:       time.Now,
		sem:       make(chan struct{}, 1),
		creds:     creds,
	}
}

func (m *tokenManager) snapshot() (Credentials, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.creds, m.revoked
}

// accessToken returns an access token to use now, refreshing first when the
// current one expires within the skew. A failed proactive refresh is not an
// error while the current token is still valid: the reactive path retries.
func (m *tokenManager) accessToken(ctx context.Context) (string, error) {
	creds, revoked := m.snapshot()
	if revoked != nil {
		return "", revoked
	}
	if m.skew <= 0 || creds.AccessExpiresAt.IsZero() || m.now().Add(m.skew).Before(creds.AccessExpiresAt) {
		return creds.AccessToken, nil
	}
	if err := m.refresh(ctx, creds.AccessToken); err != nil {
		if errors.Is(err, ErrRevoked) || !m.now().Before(creds.AccessExpiresAt) {
			return "", err
		}
		m.logger.WarnContext(ctx, "proactive token refresh failed", "err", err)
	}
	creds, revoked = m.snapshot()
	return creds.AccessToken, revoked
}

// refresh trades the refresh token for a new pair unless stale is no longer
// the current access token (another caller refreshed meanwhile). Concurrent
// callers that saw the same stale token cause one Refresh call.
func (m *tokenManager) refresh(ctx context.Context, stale string) error {
	select {
	case m.sem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-m.sem }()

	creds, revoked := m.snapshot()
	if revoked != nil {
		return revoked
	}
	if creds.AccessToken != stale {
		return nil
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refreshTimeout)
	defer cancel()
	res, err := m.auth.Refresh(rctx, &parleyv1.RefreshRequest{RefreshToken: creds.RefreshToken})
	if err != nil {
		if connect.CodeOf(err) == connect.CodeUnauthenticated {
			return m.revoke(fmt.Errorf("%w: %w", ErrRevoked, err))
		}
		return fmt.Errorf("parley: refresh: %w", err)
	}
	m.mu.Lock()
	applyTokens(&m.creds, res.GetTokens())
	creds = m.creds
	m.mu.Unlock()
	m.logger.DebugContext(ctx, "access token refreshed", "user_id", creds.UserID)
	if m.onRefresh != nil {
		m.onRefresh(creds)
	}
	return nil
}

// revoke marks the credentials unusable and returns err.
func (m *tokenManager) revoke(err error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.revoked == nil {
		m.revoked = err
	}
	return m.revoked
}

// interceptor attaches the access token to every call. A unary call that the
// server rejects with an expired token is retried once after a refresh.
// Streams are not retried here: [Session] handles expiry on reconnect.
func (m *tokenManager) interceptor(next connect.ClientFunc) connect.ClientFunc {
	return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
		token, err := m.accessToken(ctx)
		if err != nil {
			return nil, err
		}
		setBearer(ctx, token)
		stream, err := next(ctx, spec)
		if err != nil || spec.StreamType != connect.StreamTypeUnary {
			return stream, err
		}
		reopen := func() (connect.ClientStream, error) {
			if err := m.refresh(ctx, token); err != nil {
				return nil, err
			}
			fresh, err := m.accessToken(ctx)
			if err != nil {
				return nil, err
			}
			setBearer(ctx, fresh)
			return next(ctx, spec)
		}
		return &unaryRetryStream{ClientStream: stream, reopen: reopen}, nil
	}
}

// unaryRetryStream replays a unary request once on a fresh stream when the
// first attempt fails with an expired access token.
type unaryRetryStream struct {
	connect.ClientStream
	reopen  func() (connect.ClientStream, error)
	req     any
	retried bool
}

func (s *unaryRetryStream) Send(msg any) error {
	s.req = msg
	return s.ClientStream.Send(msg)
}

func (s *unaryRetryStream) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if err == nil || s.retried || s.req == nil || !isAccessExpired(err) {
		return err
	}
	s.retried = true
	stream, rerr := s.reopen()
	if rerr != nil {
		return rerr
	}
	_ = s.Close() // the failed attempt
	s.ClientStream = stream
	if err := stream.Send(s.req); err != nil {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.Receive(msg)
}

func setBearer(ctx context.Context, token string) {
	if info, ok := connect.CallInfoForClientContext(ctx); ok {
		info.RequestHeader().Set("Authorization", "Bearer "+token)
	}
}

// isAccessExpired reports whether err is the server's verdict that the access
// token expired (as opposed to missing, invalid or revoked).
func isAccessExpired(err error) bool {
	cerr, ok := errors.AsType[*connect.Error](err)
	return ok && cerr.Code() == connect.CodeUnauthenticated && strings.Contains(cerr.Message(), "expired")
}

func applyTokens(c *Credentials, t *parleyv1.Tokens) {
	c.AccessToken = t.GetAccessToken()
	c.RefreshToken = t.GetRefreshToken()
	c.AccessExpiresAt = timeOf(t.GetAccessExpiresAt().AsTime(), t.GetAccessExpiresAt() != nil)
	c.RefreshExpiresAt = timeOf(t.GetRefreshExpiresAt().AsTime(), t.GetRefreshExpiresAt() != nil)
}

func timeOf(t time.Time, ok bool) time.Time {
	if !ok {
		return time.Time{}
	}
	return t
}
