package auth_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	healthv1 "github.com/parley-im/parley/clients/go/gen/grpc/health/v1"
	"github.com/parley-im/parley/clients/go/gen/grpc/health/v1/healthv1connect"
	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/auth"
	"github.com/parley-im/parley/storage"
)

const password = "correct horse battery staple"

// node is one server process: a Service behind a real Connect HTTP server
// with the auth interceptor, plus generated clients pointed at it.
type node struct {
	svc     *auth.Service
	revoked chan string // devices passed to the OnRevoke hook
	auth    parleyv1connect.AuthServiceClient
	conv    parleyv1connect.ConversationServiceClient
	chat    parleyv1connect.ChatServiceClient
	health  healthv1connect.HealthClient
}

// env is a single-node test setup.
type env struct {
	*node
	clock   *auth.FakeClock
	store   *auth.MemStore
	dataDir string
	logs    *syncBuffer
	cfg     auth.Config
}

func newEnv(t *testing.T, mutate ...func(*auth.Config)) *env {
	t.Helper()
	cfg := auth.FastConfig()
	for _, m := range mutate {
		m(&cfg)
	}
	e := &env{
		clock:   auth.NewFakeClock(),
		store:   auth.NewMemStore(),
		dataDir: t.TempDir(),
		logs:    &syncBuffer{},
		cfg:     cfg,
	}
	e.node = e.startNode(t)
	return e
}

// startNode starts another server sharing e's store, clock, data directory
// (so its signing key) and config: a second node of the same cluster.
func (e *env) startNode(t *testing.T) *node {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc, err := auth.New(e.cfg, e.dataDir, e.store, logger, e.clock.Now)
	require.NoError(t, err)
	n := &node{svc: svc, revoked: make(chan string, 16)}
	svc.SetOnRevoke(func(deviceID string) { n.revoked <- deviceID })

	server := connect.NewServer(svc.Verifier().Interceptor())
	parleyv1connect.RegisterAuthServiceHandler(server, svc)
	parleyv1connect.RegisterConversationServiceHandler(server, whoamiService{})
	parleyv1connect.RegisterChatServiceHandler(server, parleyv1connect.UnimplementedChatServiceHandler{})
	healthv1connect.RegisterHealthHandler(server, healthv1connect.UnimplementedHealthHandler{})
	mux := http.NewServeMux()
	connecthttp.Mount(mux, server)
	hs := httptest.NewServer(mux)
	t.Cleanup(hs.Close)

	client := connect.NewClient(connecthttp.NewTransport(hs.Client(), hs.URL))
	n.auth = parleyv1connect.NewAuthServiceClient(client)
	n.conv = parleyv1connect.NewConversationServiceClient(client)
	n.chat = parleyv1connect.NewChatServiceClient(client)
	n.health = healthv1connect.NewHealthClient(client)
	return n
}

// whoamiService stands in for any authenticated service: LookupUser echoes
// the caller's identity (user id as Id, device id as Username).
type whoamiService struct {
	parleyv1connect.UnimplementedConversationServiceHandler
}

func (whoamiService) LookupUser(ctx context.Context, _ *parleyv1.LookupUserRequest) (*parleyv1.LookupUserResponse, error) {
	id, ok := auth.IdentityFrom(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeInternal, "handler reached without identity")
	}
	return &parleyv1.LookupUserResponse{User: &parleyv1.User{Id: id.UserID, Username: id.DeviceID}}, nil
}

// whoami calls the authenticated echo with an Authorization header (none
// when header is empty).
func (n *node) whoami(ctx context.Context, header string) (auth.Identity, error) {
	ctx, info := connect.NewClientContext(ctx)
	if header != "" {
		info.RequestHeader().Set("Authorization", header)
	}
	res, err := n.conv.LookupUser(ctx, &parleyv1.LookupUserRequest{Username: "x"})
	if err != nil {
		return auth.Identity{}, err
	}
	return auth.Identity{UserID: res.GetUser().GetId(), DeviceID: res.GetUser().GetUsername()}, nil
}

func (n *node) logout(ctx context.Context, accessToken string) error {
	ctx, info := connect.NewClientContext(ctx)
	if accessToken != "" {
		info.RequestHeader().Set("Authorization", "Bearer "+accessToken)
	}
	_, err := n.auth.Logout(ctx, &parleyv1.LogoutRequest{})
	return err
}

func (n *node) register(t *testing.T, username string) *parleyv1.RegisterResponse {
	t.Helper()
	res, err := n.auth.Register(t.Context(), &parleyv1.RegisterRequest{Username: username, Password: password, DeviceName: "laptop"})
	require.NoError(t, err)
	return res
}

func (n *node) refresh(ctx context.Context, token string) (*parleyv1.Tokens, error) {
	res, err := n.auth.Refresh(ctx, &parleyv1.RefreshRequest{RefreshToken: token})
	return res.GetTokens(), err
}

// requireRevokeHook asserts the OnRevoke hook ran for deviceID. The hook
// runs before the handler returns, so no waiting is needed.
func (n *node) requireRevokeHook(t *testing.T, deviceID string) {
	t.Helper()
	select {
	case got := <-n.revoked:
		require.Equal(t, deviceID, got)
	default:
		require.Fail(t, "OnRevoke hook was not called")
	}
}

func (n *node) requireNoRevokeHook(t *testing.T) {
	t.Helper()
	select {
	case got := <-n.revoked:
		require.Failf(t, "unexpected OnRevoke", "device %s", got)
	default:
	}
}

func requireConnectError(t *testing.T, err error, code connect.Code, msg string) {
	t.Helper()
	require.Error(t, err)
	var ce *connect.Error
	require.ErrorAs(t, err, &ce)
	require.Equal(t, code, ce.Code(), "message: %q", ce.Message())
	require.Equal(t, msg, ce.Message())
}

func bearer(token string) string { return "Bearer " + token }

func TestRegister(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		req         *parleyv1.RegisterRequest
		wantDisplay string
	}{
		{name: "display_name_defaults_to_username", req: &parleyv1.RegisterRequest{Username: "alice", Password: password}, wantDisplay: "alice"},
		{name: "display_name_given", req: &parleyv1.RegisterRequest{Username: "bob", Password: password, DisplayName: "Bob B.", DeviceName: "phone"}, wantDisplay: "Bob B."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			res, err := e.auth.Register(t.Context(), tt.req)
			require.NoError(t, err)

			u := res.GetUser()
			require.NotEmpty(t, u.GetId())
			require.Equal(t, tt.req.GetUsername(), u.GetUsername())
			require.Equal(t, tt.wantDisplay, u.GetDisplayName())
			require.True(t, u.GetCreatedAt().AsTime().Equal(e.clock.Now()))
			require.NotEmpty(t, res.GetDeviceId())

			tokens := res.GetTokens()
			require.True(t, tokens.GetAccessExpiresAt().AsTime().Equal(e.clock.Now().Add(15*time.Minute)))
			require.True(t, tokens.GetRefreshExpiresAt().AsTime().Equal(e.clock.Now().Add(30*24*time.Hour)))
			require.NotEmpty(t, tokens.GetRefreshToken())

			id, err := e.whoami(t.Context(), bearer(tokens.GetAccessToken()))
			require.NoError(t, err)
			require.Equal(t, auth.Identity{UserID: u.GetId(), DeviceID: res.GetDeviceId()}, id)

			stored, ok := e.store.User(tt.req.GetUsername())
			require.True(t, ok)
			require.True(t, strings.HasPrefix(stored.PasswordHash, "$argon2id$v=19$"), stored.PasswordHash)
			require.NotContains(t, stored.PasswordHash, password)
			d, ok := e.store.Device(res.GetDeviceId())
			require.True(t, ok)
			require.Equal(t, tt.req.GetDeviceName(), d.Name)
			require.Equal(t, u.GetId(), d.UserID)
		})
	}
}

func TestRegisterErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(t *testing.T, e *env)
		req      *parleyv1.RegisterRequest
		wantCode connect.Code
		wantMsg  string
	}{
		{
			name:     "username_taken",
			setup:    func(t *testing.T, e *env) { e.register(t, "alice") },
			req:      &parleyv1.RegisterRequest{Username: "alice", Password: "another password"},
			wantCode: connect.CodeAlreadyExists,
			wantMsg:  "username is taken",
		},
		{
			name:     "empty_password",
			setup:    func(*testing.T, *env) {},
			req:      &parleyv1.RegisterRequest{Username: "alice"},
			wantCode: connect.CodeInvalidArgument,
			wantMsg:  "username and password are required",
		},
		{
			name: "store_unavailable",
			setup: func(_ *testing.T, e *env) {
				e.store.SetErr("CreateUser", fmt.Errorf("sqlite: database is locked: %w", storage.ErrUnavailable))
			},
			req:      &parleyv1.RegisterRequest{Username: "alice", Password: password},
			wantCode: connect.CodeUnavailable,
			wantMsg:  "service unavailable, retry later",
		},
		{
			name: "store_failure_is_not_leaked",
			setup: func(_ *testing.T, e *env) {
				e.store.SetErr("CreateUser", errors.New("sqlite: disk I/O error at /var/lib/parley/parley.db"))
			},
			req:      &parleyv1.RegisterRequest{Username: "alice", Password: password},
			wantCode: connect.CodeInternal,
			wantMsg:  "internal error",
		},
		{
			name: "device_store_failure",
			setup: func(_ *testing.T, e *env) {
				e.store.SetErr("CreateDevice", errors.New("constraint failed"))
			},
			req:      &parleyv1.RegisterRequest{Username: "alice", Password: password},
			wantCode: connect.CodeInternal,
			wantMsg:  "internal error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			tt.setup(t, e)
			_, err := e.auth.Register(t.Context(), tt.req)
			requireConnectError(t, err, tt.wantCode, tt.wantMsg)
		})
	}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(e *env)
		username string
		password string
		wantCode connect.Code // 0: success
		wantMsg  string
	}{
		{name: "creates_new_device", setup: func(*env) {}, username: "alice", password: password},
		{name: "username_case_insensitive", setup: func(*env) {}, username: "Alice", password: password},
		{name: "wrong_password", setup: func(*env) {}, username: "alice", password: "wrong password",
			wantCode: connect.CodeUnauthenticated, wantMsg: "invalid username or password"},
		{name: "unknown_user_same_answer", setup: func(*env) {}, username: "mallory", password: password,
			wantCode: connect.CodeUnauthenticated, wantMsg: "invalid username or password"},
		{name: "store_failure", setup: func(e *env) { e.store.SetErr("GetUserByUsername", errors.New("boom")) },
			username: "alice", password: password, wantCode: connect.CodeInternal, wantMsg: "internal error"},
		{name: "create_device_failure", setup: func(e *env) { e.store.SetErr("CreateDevice", errors.New("boom")) },
			username: "alice", password: password, wantCode: connect.CodeInternal, wantMsg: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			reg := e.register(t, "alice")
			tt.setup(e)

			res, err := e.auth.Login(t.Context(), &parleyv1.LoginRequest{Username: tt.username, Password: tt.password, DeviceName: "phone"})
			if tt.wantCode != 0 {
				requireConnectError(t, err, tt.wantCode, tt.wantMsg)
				return
			}
			require.NoError(t, err)
			require.Equal(t, reg.GetUser().GetId(), res.GetUser().GetId())
			require.Equal(t, "alice", res.GetUser().GetUsername())
			require.NotEqual(t, reg.GetDeviceId(), res.GetDeviceId(), "every login is a new device")

			for _, s := range []struct{ device, token string }{
				{reg.GetDeviceId(), reg.GetTokens().GetAccessToken()},
				{res.GetDeviceId(), res.GetTokens().GetAccessToken()},
			} {
				id, err := e.whoami(t.Context(), bearer(s.token))
				require.NoError(t, err, "both sessions are live")
				require.Equal(t, auth.Identity{UserID: reg.GetUser().GetId(), DeviceID: s.device}, id)
			}
		})
	}
}

func TestRefreshRotates(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := e.register(t, "alice")
	first := reg.GetTokens()

	e.clock.Advance(10 * time.Minute)
	second, err := e.refresh(t.Context(), first.GetRefreshToken())
	require.NoError(t, err)
	require.NotEqual(t, first.GetRefreshToken(), second.GetRefreshToken())
	require.NotEqual(t, first.GetAccessToken(), second.GetAccessToken())
	require.True(t, second.GetAccessExpiresAt().AsTime().Equal(e.clock.Now().Add(15*time.Minute)))
	require.True(t, second.GetRefreshExpiresAt().AsTime().Equal(e.clock.Now().Add(30*24*time.Hour)),
		"each refresh token gets a fresh lifetime")

	id, err := e.whoami(t.Context(), bearer(second.GetAccessToken()))
	require.NoError(t, err)
	require.Equal(t, auth.Identity{UserID: reg.GetUser().GetId(), DeviceID: reg.GetDeviceId()}, id)

	third, err := e.refresh(t.Context(), second.GetRefreshToken())
	require.NoError(t, err, "the rotated token works once")
	require.NotEqual(t, second.GetRefreshToken(), third.GetRefreshToken())
	e.requireNoRevokeHook(t)
}

func TestRefreshErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// token returns the refresh token to present, after any setup.
		token    func(t *testing.T, e *env, reg *parleyv1.RegisterResponse) string
		wantCode connect.Code
		wantMsg  string
	}{
		{
			name:     "unknown",
			token:    func(*testing.T, *env, *parleyv1.RegisterResponse) string { return "bm90LWEtcmVhbC10b2tlbg" },
			wantCode: connect.CodeUnauthenticated,
			wantMsg:  "invalid or expired refresh token",
		},
		{
			name:     "malformed",
			token:    func(*testing.T, *env, *parleyv1.RegisterResponse) string { return "no-device-part" },
			wantCode: connect.CodeUnauthenticated,
			wantMsg:  "invalid or expired refresh token",
		},
		{
			// The device id is covered by the hash: pointing a genuine
			// token at another device makes it unknown.
			name: "device_id_swapped",
			token: func(t *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				bob := e.register(t, "bob")
				_, secret, ok := strings.Cut(reg.GetTokens().GetRefreshToken(), ".")
				require.True(t, ok)
				return bob.GetDeviceId() + "." + secret
			},
			wantCode: connect.CodeUnauthenticated,
			wantMsg:  "invalid or expired refresh token",
		},
		{
			name:     "empty",
			token:    func(*testing.T, *env, *parleyv1.RegisterResponse) string { return "" },
			wantCode: connect.CodeUnauthenticated,
			wantMsg:  "refresh token is required",
		},
		{
			name: "expired",
			token: func(_ *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				e.clock.Advance(30 * 24 * time.Hour)
				return reg.GetTokens().GetRefreshToken()
			},
			wantCode: connect.CodeUnauthenticated,
			wantMsg:  "invalid or expired refresh token",
		},
		{
			name: "after_logout",
			token: func(t *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				require.NoError(t, e.logout(t.Context(), reg.GetTokens().GetAccessToken()))
				e.requireRevokeHook(t, reg.GetDeviceId())
				return reg.GetTokens().GetRefreshToken()
			},
			wantCode: connect.CodeUnauthenticated,
			wantMsg:  "session revoked",
		},
		{
			name: "store_unavailable",
			token: func(_ *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				e.store.SetErr("RotateRefreshToken", storage.ErrUnavailable)
				return reg.GetTokens().GetRefreshToken()
			},
			wantCode: connect.CodeUnavailable,
			wantMsg:  "service unavailable, retry later",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			reg := e.register(t, "alice")
			_, err := e.refresh(t.Context(), tt.token(t, e, reg))
			requireConnectError(t, err, tt.wantCode, tt.wantMsg)
			e.requireNoRevokeHook(t)
		})
	}
}

// TestRefreshReuseRevokesSession: a refresh token presented a second time
// means two parties hold it. The whole session dies: the hook fires, the
// latest access token is refused at once (although the device cache had
// it as live), and the latest refresh token no longer works either.
func TestRefreshReuseRevokesSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := e.register(t, "alice")
	other := e.register(t, "bob")
	stolen := reg.GetTokens().GetRefreshToken()

	latest, err := e.refresh(t.Context(), stolen)
	require.NoError(t, err)
	_, err = e.whoami(t.Context(), bearer(latest.GetAccessToken()))
	require.NoError(t, err) // now cached as live

	_, err = e.refresh(t.Context(), stolen)
	requireConnectError(t, err, connect.CodeUnauthenticated, "refresh token reuse detected; session revoked")
	e.requireRevokeHook(t, reg.GetDeviceId())

	d, ok := e.store.Device(reg.GetDeviceId())
	require.True(t, ok)
	require.False(t, d.RevokedAt.IsZero(), "the store revoked the device")

	_, err = e.whoami(t.Context(), bearer(latest.GetAccessToken()))
	requireConnectError(t, err, connect.CodeUnauthenticated, "session revoked")
	_, err = e.refresh(t.Context(), latest.GetRefreshToken())
	requireConnectError(t, err, connect.CodeUnauthenticated, "session revoked")

	_, err = e.whoami(t.Context(), bearer(other.GetTokens().GetAccessToken()))
	require.NoError(t, err, "other users' sessions are untouched")
	e.requireNoRevokeHook(t)
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := e.register(t, "alice")
	second, err := e.auth.Login(t.Context(), &parleyv1.LoginRequest{Username: "alice", Password: password})
	require.NoError(t, err)
	access := reg.GetTokens().GetAccessToken()
	_, err = e.whoami(t.Context(), bearer(access))
	require.NoError(t, err)

	require.NoError(t, e.logout(t.Context(), access))
	e.requireRevokeHook(t, reg.GetDeviceId())

	_, err = e.whoami(t.Context(), bearer(access))
	requireConnectError(t, err, connect.CodeUnauthenticated, "session revoked")
	err = e.logout(t.Context(), access)
	requireConnectError(t, err, connect.CodeUnauthenticated, "session revoked")
	_, err = e.refresh(t.Context(), reg.GetTokens().GetRefreshToken())
	requireConnectError(t, err, connect.CodeUnauthenticated, "session revoked")

	id, err := e.whoami(t.Context(), bearer(second.GetTokens().GetAccessToken()))
	require.NoError(t, err, "the user's other device stays signed in")
	require.Equal(t, second.GetDeviceId(), id.DeviceID)
	e.requireNoRevokeHook(t)
}

func TestLogoutErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(e *env)
		token    func(reg *parleyv1.RegisterResponse) string
		wantCode connect.Code
		wantMsg  string
	}{
		{
			name:     "no_token",
			setup:    func(*env) {},
			token:    func(*parleyv1.RegisterResponse) string { return "" },
			wantCode: connect.CodeUnauthenticated,
			wantMsg:  "missing access token",
		},
		{
			name:     "store_failure",
			setup:    func(e *env) { e.store.SetErr("RevokeDevice", errors.New("boom")) },
			token:    func(reg *parleyv1.RegisterResponse) string { return reg.GetTokens().GetAccessToken() },
			wantCode: connect.CodeInternal,
			wantMsg:  "internal error",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			reg := e.register(t, "alice")
			tt.setup(e)
			err := e.logout(t.Context(), tt.token(reg))
			requireConnectError(t, err, tt.wantCode, tt.wantMsg)
			e.requireNoRevokeHook(t)
		})
	}
}

func TestLogoutWithoutInterceptor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Called directly, without the interceptor, there is no identity.
	_, err := e.svc.Logout(t.Context(), &parleyv1.LogoutRequest{})
	requireConnectError(t, err, connect.CodeUnauthenticated, "missing access token")
}

func TestInterceptorRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// header builds the Authorization header from a fresh session.
		header  func(t *testing.T, e *env, reg *parleyv1.RegisterResponse) string
		wantMsg string
	}{
		{
			name:    "missing",
			header:  func(*testing.T, *env, *parleyv1.RegisterResponse) string { return "" },
			wantMsg: "missing access token",
		},
		{
			name: "not_bearer",
			header: func(_ *testing.T, _ *env, reg *parleyv1.RegisterResponse) string {
				return "Basic " + reg.GetTokens().GetAccessToken()
			},
			wantMsg: "missing access token",
		},
		{
			name: "refresh_token_as_access_token",
			header: func(_ *testing.T, _ *env, reg *parleyv1.RegisterResponse) string {
				return bearer(reg.GetTokens().GetRefreshToken())
			},
			wantMsg: "invalid access token",
		},
		{
			name: "tampered_signature",
			header: func(_ *testing.T, _ *env, reg *parleyv1.RegisterResponse) string {
				parts := strings.Split(reg.GetTokens().GetAccessToken(), ".")
				sig := []byte(parts[2])
				if sig[5] == 'A' {
					sig[5] = 'B'
				} else {
					sig[5] = 'A'
				}
				return bearer(parts[0] + "." + parts[1] + "." + string(sig))
			},
			wantMsg: "invalid access token",
		},
		{
			name: "alg_hs256_with_public_key",
			header: func(t *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				claims := claimsOf(t, reg.GetTokens().GetAccessToken())
				pub := signingKey(t, e.dataDir).Public().(ed25519.PublicKey)
				forged, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(pub))
				require.NoError(t, err)
				return bearer(forged)
			},
			wantMsg: "invalid access token",
		},
		{
			name: "alg_none",
			header: func(t *testing.T, _ *env, reg *parleyv1.RegisterResponse) string {
				claims := claimsOf(t, reg.GetTokens().GetAccessToken())
				forged, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims).SignedString(jwt.UnsafeAllowNoneSignatureType)
				require.NoError(t, err)
				return bearer(forged)
			},
			wantMsg: "invalid access token",
		},
		{
			name: "other_users_device",
			header: func(t *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				// Correctly signed (with the real key) but pairing Bob's
				// user id with Alice's device: never issued by us.
				bob := e.register(t, "bob")
				claims := claimsOf(t, reg.GetTokens().GetAccessToken())
				claims["sub"] = bob.GetUser().GetId()
				forged, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(signingKey(t, e.dataDir))
				require.NoError(t, err)
				return bearer(forged)
			},
			wantMsg: "invalid access token",
		},
		{
			name: "unknown_device",
			header: func(t *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				claims := claimsOf(t, reg.GetTokens().GetAccessToken())
				claims["did"] = "no-such-device"
				forged, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(signingKey(t, e.dataDir))
				require.NoError(t, err)
				return bearer(forged)
			},
			wantMsg: "session revoked",
		},
		{
			name: "expired",
			header: func(_ *testing.T, e *env, reg *parleyv1.RegisterResponse) string {
				e.clock.Advance(15 * time.Minute)
				return bearer(reg.GetTokens().GetAccessToken())
			},
			wantMsg: "access token expired",
		},
		{
			name: "signed_by_another_server",
			header: func(t *testing.T, _ *env, _ *parleyv1.RegisterResponse) string {
				stranger := newEnv(t) // its own data dir, so its own key
				return bearer(stranger.register(t, "alice").GetTokens().GetAccessToken())
			},
			wantMsg: "invalid access token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			reg := e.register(t, "alice")
			_, err := e.whoami(t.Context(), tt.header(t, e, reg))
			requireConnectError(t, err, connect.CodeUnauthenticated, tt.wantMsg)
		})
	}
}

func TestInterceptorPublicProcedures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Register, Login and Refresh work without a token (TestRegister etc.);
	// health answers too: Unimplemented here means the call reached the
	// handler.
	_, err := e.health.Check(t.Context(), &healthv1.HealthCheckRequest{})
	require.Equal(t, connect.CodeUnimplemented, connect.CodeOf(err))
}

func TestInterceptorStreams(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := e.register(t, "alice")
	tests := []struct {
		name     string
		header   string
		wantCode connect.Code
	}{
		{name: "no_token_rejected_at_open", header: "", wantCode: connect.CodeUnauthenticated},
		// The stand-in chat service is unimplemented: reaching it proves
		// the interceptor let the stream through.
		{name: "valid_token_reaches_handler", header: bearer(reg.GetTokens().GetAccessToken()), wantCode: connect.CodeUnimplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, info := connect.NewClientContext(t.Context())
			if tt.header != "" {
				info.RequestHeader().Set("Authorization", tt.header)
			}
			stream, err := e.chat.Subscribe(ctx, &parleyv1.SubscribeRequest{})
			if err == nil {
				t.Cleanup(func() { _ = stream.Close() })
				_, err = stream.Receive()
			}
			require.Equal(t, tt.wantCode, connect.CodeOf(err), "err: %v", err)
		})
	}
}

func TestInterceptorStoreErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		err      error
		wantCode connect.Code
		wantMsg  string
	}{
		{name: "unavailable", err: fmt.Errorf("db: %w", storage.ErrUnavailable), wantCode: connect.CodeUnavailable, wantMsg: "service unavailable, retry later"},
		{name: "other", err: errors.New("corrupt page 7"), wantCode: connect.CodeInternal, wantMsg: "internal error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// No cache, so every call asks the store: the check fails closed.
			e := newEnv(t, func(c *auth.Config) { c.DeviceCacheTTL = 0 })
			reg := e.register(t, "alice")
			e.store.SetErr("GetDevice", tt.err)
			_, err := e.whoami(t.Context(), bearer(reg.GetTokens().GetAccessToken()))
			requireConnectError(t, err, tt.wantCode, tt.wantMsg)
		})
	}
}

func TestDeviceCacheSparesTheStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := e.register(t, "alice")
	header := bearer(reg.GetTokens().GetAccessToken())

	for range 3 {
		_, err := e.whoami(t.Context(), header)
		require.NoError(t, err)
	}
	require.Zero(t, e.store.GetDeviceCalls(), "a device signed in on this node is cached")

	e.clock.Advance(30 * time.Second)
	for range 3 {
		_, err := e.whoami(t.Context(), header)
		require.NoError(t, err)
	}
	require.Equal(t, 1, e.store.GetDeviceCalls(), "after the TTL the store is asked once")
}

// TestRevocationAcrossNodes pins down the documented cluster behaviour: a
// revocation is instant on the node that made it, and other nodes honour it
// once their cache entry for the device expires (DeviceCacheTTL).
func TestRevocationAcrossNodes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := e.startNode(t) // same store, same data dir: same signing key
	reg := e.register(t, "alice")
	header := bearer(reg.GetTokens().GetAccessToken())

	_, err := other.whoami(t.Context(), header)
	require.NoError(t, err, "a token from one node works on another")

	require.NoError(t, e.logout(t.Context(), reg.GetTokens().GetAccessToken()))
	e.requireRevokeHook(t, reg.GetDeviceId())
	other.requireNoRevokeHook(t)

	_, err = e.whoami(t.Context(), header)
	requireConnectError(t, err, connect.CodeUnauthenticated, "session revoked")
	_, err = other.whoami(t.Context(), header)
	require.NoError(t, err, "the other node still trusts its cache")

	e.clock.Advance(30 * time.Second)
	_, err = other.whoami(t.Context(), header)
	requireConnectError(t, err, connect.CodeUnauthenticated, "session revoked")
}

func TestSigningKeyFile(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	path := filepath.Join(e.dataDir, "signing.key")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	before := signingKey(t, e.dataDir)

	reg := e.register(t, "alice")
	restarted := e.startNode(t) // a restart: a new Service in the same dir
	require.True(t, before.Equal(signingKey(t, e.dataDir)), "the key is reused, not regenerated")
	_, err = restarted.whoami(t.Context(), bearer(reg.GetTokens().GetAccessToken()))
	require.NoError(t, err, "tokens survive a restart")
}

func TestSetOnRevokeNil(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.svc.SetOnRevoke(nil)
	reg := e.register(t, "alice")
	require.NoError(t, e.logout(t.Context(), reg.GetTokens().GetAccessToken()))
}

func TestLogsHoldNoSecrets(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	reg := e.register(t, "alice")
	next, err := e.refresh(t.Context(), reg.GetTokens().GetRefreshToken())
	require.NoError(t, err)
	_, err = e.refresh(t.Context(), reg.GetTokens().GetRefreshToken()) // reuse: logged
	require.Error(t, err)
	e.store.SetErr("GetUserByUsername", errors.New("boom"))
	_, err = e.auth.Login(t.Context(), &parleyv1.LoginRequest{Username: "alice", Password: password})
	require.Error(t, err)

	logs := e.logs.String()
	require.Contains(t, logs, "refresh token reused")
	require.Contains(t, logs, "user_id="+reg.GetUser().GetId())
	require.Contains(t, logs, "err=boom")
	for _, secret := range []string{
		password,
		reg.GetTokens().GetAccessToken(),
		reg.GetTokens().GetRefreshToken(),
		next.GetAccessToken(),
		next.GetRefreshToken(),
	} {
		require.NotContains(t, logs, secret)
	}
}

// claimsOf returns a token's claims without verifying it.
func claimsOf(t *testing.T, token string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	_, _, err := jwt.NewParser().ParseUnverified(token, claims)
	require.NoError(t, err)
	return claims
}

// signingKey reads the key a Service stored in dataDir.
func signingKey(t *testing.T, dataDir string) ed25519.PrivateKey {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dataDir, "signing.key"))
	require.NoError(t, err)
	block, _ := pem.Decode(data)
	require.NotNil(t, block)
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	require.NoError(t, err)
	return key.(ed25519.PrivateKey)
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Nodes sharing a signing key derive the same secrets; different purposes
// and different keys give different ones.
func TestDerivedKeysAgreeAcrossNodes(t *testing.T) {
	e := newEnv(t)
	second := e.startNode(t)
	k := e.svc.DeriveKey("media-urls")
	require.Len(t, k, 32)
	require.Equal(t, k, second.svc.DeriveKey("media-urls"))
	require.NotEqual(t, k, e.svc.DeriveKey("something-else"))

	other := newEnv(t)
	require.NotEqual(t, k, other.svc.DeriveKey("media-urls"))
}
