// Package auth holds Parley's accounts and sessions: password hashing
// (argon2id), access tokens (Ed25519-signed JWTs), single-use rotating
// refresh tokens, the AuthService handlers, and the interceptor that
// authenticates every other call.
//
// Wiring: build a Service with New, register it with
// parleyv1connect.RegisterAuthServiceHandler, install
// Service.Verifier().Interceptor() on the connect.Server, and set
// Service.SetOnRevoke so revoked devices lose their live streams.
package auth

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/internal/ratelimit"
	"github.com/parley-im/parley/server/metrics"
	"github.com/parley-im/parley/storage"
)

// Messages of the errors the handlers return, besides the Verifier's.
const (
	msgUsernameTaken       = "username is taken"
	msgBadCredentials      = "invalid username or password"
	msgBadRefreshToken     = "invalid or expired refresh token"
	msgRefreshTokenReused  = "refresh token reuse detected; session revoked"
	msgInternal            = "internal error"
	msgUnavailable         = "service unavailable, retry later"
	msgMissingCredentials  = "username and password are required"
	msgMissingRefreshToken = "refresh token is required"
	msgTooManyAttempts     = "too many attempts, retry later"
)

var _ parleyv1connect.AuthServiceHandler = (*Service)(nil)

// Store is what the auth package needs from the system of record; any
// storage.Store satisfies it. It must be safe for concurrent use.
type Store interface {
	CreateUser(ctx context.Context, u storage.User) error
	GetUserByUsername(ctx context.Context, username string) (storage.User, error)
	CreateDevice(ctx context.Context, d storage.Device, first storage.RefreshToken) error
	GetDevice(ctx context.Context, id string) (storage.Device, error)
	RotateRefreshToken(ctx context.Context, oldHash []byte, next storage.RefreshToken, now time.Time) (storage.Device, error)
	RevokeDevice(ctx context.Context, id string, now time.Time) error
}

// Service implements parleyv1connect.AuthServiceHandler. It is safe for
// concurrent use.
//
// Error contract of every handler: Unauthenticated, AlreadyExists and
// InvalidArgument carry the messages documented on each method; a store
// that reports storage.ErrUnavailable yields Unavailable; a context that
// ends yields its own error (Canceled or DeadlineExceeded); anything else
// yields Internal with a generic message, its cause logged with user_id and
// err. Passwords and tokens are never logged. Register and Login may also
// fail with ResourceExhausted "too many attempts, retry later", carrying a
// google.rpc.RetryInfo detail, when the client address or the username is
// rate limited (see Config).
type Service struct {
	cfg       Config
	store     Store
	logger    *slog.Logger
	now       func() time.Time
	signer    *signer
	verifier  *Verifier
	hashSlots chan struct{} // semaphore bounding concurrent argon2 work
	// dummyHash is verified against when a username does not exist, so
	// that a failed Login costs the same whether or not it does.
	dummyHash string
	onRevoke  atomic.Pointer[func(deviceID string)]
	// loginFailures counts failed logins per lowercased username;
	// attempts counts Register and Login calls per client address. nil
	// when disabled.
	loginFailures *ratelimit.Keyed
	attempts      *ratelimit.Keyed
	// limits counts the limiters' refusals; nil counts nothing.
	limits *metrics.RateLimit
}

// New returns a Service. It validates cfg, then loads the signing key from
// cfg.SigningKeyFile (or "<dataDir>/signing.key" when that is empty),
// creating the file with a new key (mode 0600) if it does not exist.
// logger nil discards logs; now nil means time.Now (tests inject a clock;
// it drives token expiry and the device cache).
//
// New computes one password hash (the dummy for unknown usernames), so it
// takes as long as a Login.
func New(cfg Config, dataDir string, store Store, logger *slog.Logger, now func() time.Time) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if store == nil {
		return nil, errors.New("auth: nil store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	keyPath := cfg.SigningKeyFile
	if keyPath == "" {
		if dataDir == "" {
			return nil, errors.New("auth: no signing_key_file and no data directory")
		}
		keyPath = filepath.Join(dataDir, defaultKeyFile)
	}
	key, created, err := loadOrCreateKey(keyPath)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	if created {
		// In a cluster every node must share one key; a node that makes its
		// own rejects every other node's tokens, so say so loudly.
		logger.Info("auth: generated a new access-token signing key at " + keyPath +
			"; every server node must use this same key")
	} else if fi, err := os.Stat(keyPath); err == nil && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("auth: signing key " + keyPath + " is readable by group or others; chmod 600 it")
	}

	// The dummy is the hash of a random password nobody knows, made with
	// the current parameters so that it costs what a real hash costs.
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	dummy, err := hashPassword(base64.RawStdEncoding.EncodeToString(secret), cfg.params())
	if err != nil {
		return nil, fmt.Errorf("auth: dummy hash: %w", err)
	}

	sig := newSigner(key, cfg.AccessTTL, now)
	return &Service{
		cfg:    cfg,
		store:  store,
		logger: logger,
		now:    now,
		signer: sig,
		verifier: &Verifier{
			signer:  sig,
			devices: store,
			cache:   newDeviceCache(cfg.DeviceCacheTTL, cfg.DeviceCacheSize, now),
			logger:  logger,
		},
		hashSlots:     make(chan struct{}, cfg.MaxConcurrentHashes),
		dummyHash:     dummy,
		loginFailures: ratelimit.New(cfg.LoginFailureBurst, cfg.LoginFailureInterval),
		attempts:      ratelimit.New(cfg.AddressAttemptBurst, cfg.AddressAttemptInterval),
	}, nil
}

// Verifier returns the Verifier that shares this Service's signing key and
// revocation cache.
func (s *Service) Verifier() *Verifier {
	return s.verifier
}

// SetMetrics makes the Service count its rate limiters' refusals in m
// (nil: not counted). Call it before serving.
func (s *Service) SetMetrics(m *metrics.RateLimit) { s.limits = m }

// SetOnRevoke sets the hook called with a device id after that device's
// session was revoked through this Service (Logout, or a reused refresh
// token); nil removes it. The server uses it to close the device's live
// streams, which the interceptor checked only when they opened.
//
// The hook runs synchronously on the handler's goroutine, after the
// revocation is durable and the local cache knows of it; it must not block.
// Revocations made by other nodes do not call it. Safe to call at any time,
// concurrently with handlers.
func (s *Service) SetOnRevoke(fn func(deviceID string)) {
	if fn == nil {
		s.onRevoke.Store(nil)
		return
	}
	s.onRevoke.Store(&fn)
}

// Register creates an account and its first device session. display_name
// defaults to the username. Errors: AlreadyExists "username is taken";
// InvalidArgument when username or password is empty (the rest of the
// request's rules are enforced by the validation interceptor from the
// proto). Otherwise as documented on Service.
func (s *Service) Register(ctx context.Context, req *parleyv1.RegisterRequest) (*parleyv1.RegisterResponse, error) {
	if req.GetUsername() == "" || req.GetPassword() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, msgMissingCredentials)
	}
	if err := s.allowAttempt(ctx); err != nil {
		return nil, err
	}
	hash, err := s.hashPassword(ctx, req.GetPassword())
	if err != nil {
		return nil, s.internal(ctx, "register: hash password", "", err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, s.internal(ctx, "register: user id", "", err)
	}
	u := storage.User{
		ID:           id.String(),
		Username:     req.GetUsername(),
		DisplayName:  cmp.Or(req.GetDisplayName(), req.GetUsername()),
		PasswordHash: hash,
		CreatedAt:    s.now().UTC(),
	}
	switch err := s.store.CreateUser(ctx, u); {
	case errors.Is(err, storage.ErrConflict):
		return nil, connect.NewError(connect.CodeAlreadyExists, msgUsernameTaken)
	case err != nil:
		return nil, s.storeError(ctx, "register: create user", u.ID, err)
	}
	deviceID, tokens, err := s.startSession(ctx, u.ID, req.GetDeviceName())
	if err != nil {
		// The account exists; the client can Login to get a session.
		return nil, err
	}
	return &parleyv1.RegisterResponse{User: userProto(u), DeviceId: deviceID, Tokens: tokens}, nil
}

// Login checks a username and password and signs a new device in (every
// Login creates a device). The username is matched case-insensitively,
// since usernames are lowercase. Errors: Unauthenticated "invalid username
// or password" for an unknown username and a wrong password alike, at the
// same cost. ResourceExhausted once the username has failed too often,
// known or not. Otherwise as documented on Service.
func (s *Service) Login(ctx context.Context, req *parleyv1.LoginRequest) (*parleyv1.LoginResponse, error) {
	if req.GetUsername() == "" || req.GetPassword() == "" {
		return nil, connect.NewError(connect.CodeInvalidArgument, msgMissingCredentials)
	}
	if err := s.allowAttempt(ctx); err != nil {
		return nil, err
	}
	username := strings.ToLower(req.GetUsername())
	// Checked before the store is asked, so a limited username answers
	// the same whether or not it exists.
	if ok, wait := s.loginFailures.Check(username, s.now()); !ok {
		s.limits.Rejected(metrics.LimitLogin)
		return nil, ratelimit.Error(msgTooManyAttempts, wait)
	}
	u, err := s.store.GetUserByUsername(ctx, username)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// Spend the same time as for a real user; the result is
		// irrelevant.
		if _, err := s.verifyPassword(ctx, req.GetPassword(), s.dummyHash); err != nil {
			return nil, s.internal(ctx, "login: verify dummy password", "", err)
		}
		s.loginFailures.Spend(username, s.now())
		return nil, connect.NewError(connect.CodeUnauthenticated, msgBadCredentials)
	case err != nil:
		return nil, s.storeError(ctx, "login: get user", "", err)
	}
	ok, err := s.verifyPassword(ctx, req.GetPassword(), u.PasswordHash)
	if err != nil {
		return nil, s.internal(ctx, "login: verify password", u.ID, err)
	}
	if !ok {
		s.loginFailures.Spend(username, s.now())
		return nil, connect.NewError(connect.CodeUnauthenticated, msgBadCredentials)
	}
	deviceID, tokens, err := s.startSession(ctx, u.ID, req.GetDeviceName())
	if err != nil {
		return nil, err
	}
	return &parleyv1.LoginResponse{User: userProto(u), DeviceId: deviceID, Tokens: tokens}, nil
}

// Refresh spends a refresh token and returns a new access token and a new
// refresh token (rotation). Errors, all Unauthenticated:
//   - "refresh token is required": the request has none.
//   - "invalid or expired refresh token": unknown or past its expiry.
//   - "session revoked": the device was signed out.
//   - "refresh token reuse detected; session revoked": the token had been
//     spent before, so someone holds a copy; the store revoked the device,
//     its access tokens stop working on this node at once and the OnRevoke
//     hook fires.
//
// Otherwise as documented on Service.
func (s *Service) Refresh(ctx context.Context, req *parleyv1.RefreshRequest) (*parleyv1.RefreshResponse, error) {
	presented := req.GetRefreshToken()
	if presented == "" {
		return nil, connect.NewError(connect.CodeUnauthenticated, msgMissingRefreshToken)
	}
	// Unverified until the store matches the token's hash; a forged
	// device id changes the hash, so the store will not find it.
	deviceID, ok := refreshTokenDevice(presented)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, msgBadRefreshToken)
	}
	next, nextHash, err := newRefreshToken(deviceID)
	if err != nil {
		return nil, s.internal(ctx, "refresh: new token", "", err)
	}
	now := s.now().UTC()
	nextToken := storage.RefreshToken{Hash: nextHash, DeviceID: deviceID, ExpiresAt: now.Add(s.cfg.RefreshTTL)}
	d, err := s.store.RotateRefreshToken(ctx, hashRefreshToken(presented), nextToken, now)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return nil, connect.NewError(connect.CodeUnauthenticated, msgBadRefreshToken)
	case errors.Is(err, storage.ErrRevoked):
		s.verifier.revoked(deviceID)
		return nil, connect.NewError(connect.CodeUnauthenticated, msgSessionRevoked)
	case errors.Is(err, storage.ErrTokenReused):
		s.revoked(deviceID)
		s.logReuse(ctx, deviceID)
		return nil, connect.NewError(connect.CodeUnauthenticated, msgRefreshTokenReused)
	case err != nil:
		return nil, s.storeError(ctx, "refresh: rotate token", "", err)
	case d.ID != deviceID:
		// The store spent a token under a device other than the one the
		// token names: a backend bug. Refuse rather than sign for it.
		return nil, s.internal(ctx, "refresh: rotate token", d.UserID,
			fmt.Errorf("store rotated a token of device %q for one naming %q", d.ID, deviceID))
	}
	access, accessExp, err := s.signer.sign(d.UserID, d.ID)
	if err != nil {
		return nil, s.internal(ctx, "refresh: sign access token", d.UserID, err)
	}
	// The store just said the device is live; spare the next call a read.
	s.verifier.cache.putLive(d.ID, d.UserID)
	return &parleyv1.RefreshResponse{Tokens: &parleyv1.Tokens{
		AccessToken:      access,
		AccessExpiresAt:  timestamppb.New(accessExp),
		RefreshToken:     next,
		RefreshExpiresAt: timestamppb.New(nextToken.ExpiresAt),
	}}, nil
}

// Logout revokes the calling device's session: its refresh token is spent,
// its access tokens stop working on this node at once (on other nodes
// within Config.DeviceCacheTTL), and the OnRevoke hook fires. Logging out
// a device that is already revoked or gone succeeds. Errors:
// Unauthenticated "missing access token" when ctx has no Identity (the
// interceptor is not installed). Otherwise as documented on Service.
func (s *Service) Logout(ctx context.Context, _ *parleyv1.LogoutRequest) (*parleyv1.LogoutResponse, error) {
	id, ok := IdentityFrom(ctx)
	if !ok {
		return nil, connect.NewError(connect.CodeUnauthenticated, msgMissingToken)
	}
	err := s.store.RevokeDevice(ctx, id.DeviceID, s.now().UTC())
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return nil, s.storeError(ctx, "logout: revoke device", id.UserID, err)
	}
	s.revoked(id.DeviceID)
	return &parleyv1.LogoutResponse{}, nil
}

// allowAttempt spends one Register or Login attempt of the calling
// client's address. Calls whose address is unknown (no peer, as in-process
// tests) are not limited.
func (s *Service) allowAttempt(ctx context.Context) error {
	info, ok := connect.CallInfoForServerContext(ctx)
	if !ok || info.PeerAddr == "" {
		return nil
	}
	host := info.PeerAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if ok, wait := s.attempts.Allow(host, s.now()); !ok {
		s.limits.Rejected(metrics.LimitAddress)
		return ratelimit.Error(msgTooManyAttempts, wait)
	}
	return nil
}

// startSession creates a device for userID with its first refresh token and
// returns the device id and the tokens. Errors are ready for the wire.
func (s *Service) startSession(ctx context.Context, userID, deviceName string) (string, *parleyv1.Tokens, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return "", nil, s.internal(ctx, "new device id", userID, err)
	}
	d := storage.Device{ID: id.String(), UserID: userID, Name: deviceName}
	refresh, refreshHash, err := newRefreshToken(d.ID)
	if err != nil {
		return "", nil, s.internal(ctx, "new refresh token", userID, err)
	}
	now := s.now().UTC()
	d.CreatedAt = now
	first := storage.RefreshToken{Hash: refreshHash, DeviceID: d.ID, ExpiresAt: now.Add(s.cfg.RefreshTTL)}
	if err := s.store.CreateDevice(ctx, d, first); err != nil {
		return "", nil, s.storeError(ctx, "create device", userID, err)
	}
	access, accessExp, err := s.signer.sign(userID, d.ID)
	if err != nil {
		return "", nil, s.internal(ctx, "sign access token", userID, err)
	}
	s.verifier.cache.putLive(d.ID, userID)
	return d.ID, &parleyv1.Tokens{
		AccessToken:      access,
		AccessExpiresAt:  timestamppb.New(accessExp),
		RefreshToken:     refresh,
		RefreshExpiresAt: timestamppb.New(first.ExpiresAt),
	}, nil
}

// revoked propagates a durable revocation: the local cache first, so the
// device's access tokens are refused from now on, then the hook.
func (s *Service) revoked(deviceID string) {
	s.verifier.revoked(deviceID)
	if fn := s.onRevoke.Load(); fn != nil {
		(*fn)(deviceID)
	}
}

// logReuse records a refresh-token reuse: a security event (someone holds
// a copy of a token), not a fault of ours, hence Warn. The store does not
// say whose device it was, so look it up for the log; best effort.
func (s *Service) logReuse(ctx context.Context, deviceID string) {
	var userID string
	if d, err := s.store.GetDevice(ctx, deviceID); err == nil {
		userID = d.UserID
	}
	s.logger.LogAttrs(ctx, slog.LevelWarn, "auth: refresh token reused; session revoked",
		slog.String("user_id", userID))
}

// hashPassword hashes with the configured parameters once a hashing slot
// is free.
func (s *Service) hashPassword(ctx context.Context, password string) (string, error) {
	if err := s.acquireHashSlot(ctx); err != nil {
		return "", err
	}
	defer s.releaseHashSlot()
	return hashPassword(password, s.cfg.params())
}

// verifyPassword checks password against a stored hash once a hashing slot
// is free.
func (s *Service) verifyPassword(ctx context.Context, password, encoded string) (bool, error) {
	if err := s.acquireHashSlot(ctx); err != nil {
		return false, err
	}
	defer s.releaseHashSlot()
	return verifyPassword(password, encoded)
}

func (s *Service) acquireHashSlot(ctx context.Context) error {
	select {
	case s.hashSlots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) releaseHashSlot() { <-s.hashSlots }

// storeError turns a store failure into a wire error (see storeError).
func (s *Service) storeError(ctx context.Context, op, userID string, err error) error {
	return storeError(ctx, s.logger, op, userID, err)
}

// internal turns a failure of our own (not the store's) into a wire error:
// context errors pass through, anything else is logged and becomes
// Internal.
func (s *Service) internal(ctx context.Context, op, userID string, err error) error {
	if isContextError(err) {
		return err
	}
	s.logger.LogAttrs(ctx, slog.LevelError, "auth: "+op,
		slog.String("user_id", userID), slog.Any("err", err))
	return connect.NewError(connect.CodeInternal, msgInternal).WithCause(err)
}

// storeError maps an unexpected store error: context errors pass through
// unchanged (Connect reports Canceled or DeadlineExceeded),
// storage.ErrUnavailable becomes Unavailable so clients retry, anything
// else Internal. The cause is logged, never sent.
func storeError(ctx context.Context, logger *slog.Logger, op, userID string, err error) error {
	if isContextError(err) {
		return err
	}
	if errors.Is(err, storage.ErrUnavailable) {
		logger.LogAttrs(ctx, slog.LevelWarn, "auth: "+op,
			slog.String("user_id", userID), slog.Any("err", err))
		return connect.NewError(connect.CodeUnavailable, msgUnavailable).WithCause(err)
	}
	logger.LogAttrs(ctx, slog.LevelError, "auth: "+op,
		slog.String("user_id", userID), slog.Any("err", err))
	return connect.NewError(connect.CodeInternal, msgInternal).WithCause(err)
}

func isContextError(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// userProto is the public view of a user.
func userProto(u storage.User) *parleyv1.User {
	return &parleyv1.User{
		Id:          u.ID,
		Username:    u.Username,
		DisplayName: u.DisplayName,
		CreatedAt:   timestamppb.New(u.CreatedAt),
	}
}

// DeriveKey returns a 32-byte secret for purpose (e.g. "media-urls"),
// derived from the signing key: every node of a cluster shares that key, so
// they agree on derived secrets too without another file to distribute,
// and a derived secret reveals nothing about the signing key.
func (s *Service) DeriveKey(purpose string) []byte {
	mac := hmac.New(sha256.New, s.signer.key.Seed())
	mac.Write([]byte("parley derived key: " + purpose))
	return mac.Sum(nil)
}
