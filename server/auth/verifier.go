package auth

import (
	"context"
	"errors"
	"log/slog"
	"strings"

	"connectrpc.com/connect/v2"

	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/storage"
)

// Messages of the Unauthenticated errors the interceptor returns. Clients
// may show them; they name no internals.
const (
	msgMissingToken   = "missing access token"
	msgInvalidToken   = "invalid access token"
	msgExpiredToken   = "access token expired"
	msgSessionRevoked = "session revoked"
)

// publicProcedures need no access token: they are how a device gets one.
// Logout is not among them, since it acts on the caller's session.
var publicProcedures = map[string]bool{
	parleyv1connect.AuthServiceRegisterProcedure: true,
	parleyv1connect.AuthServiceLoginProcedure:    true,
	parleyv1connect.AuthServiceRefreshProcedure:  true,
}

// publicPrefixes are whole services that need no access token: health
// checks (load balancers, kubelet) and reflection (grpcurl, buf curl; both
// v1 and v1alpha, which share this prefix).
var publicPrefixes = []string{
	"/grpc.health.v1.Health/",
	"/grpc.reflection.",
}

// Verifier authenticates calls by their access token and tracks which
// devices are revoked. Obtain it from Service.Verifier; it shares the
// Service's revocation cache, which is what makes a Logout or a detected
// refresh-token reuse take effect on this node at once.
//
// A Verifier is safe for concurrent use.
type Verifier struct {
	signer  *signer
	devices deviceGetter
	cache   *deviceCache
	logger  *slog.Logger
}

// deviceGetter is the part of Store the Verifier needs.
type deviceGetter interface {
	GetDevice(ctx context.Context, id string) (storage.Device, error)
}

// Interceptor returns the server interceptor that authenticates every call
// except Register, Login, Refresh and the gRPC health and reflection
// services. It reads "Authorization: Bearer <access token>", checks it with
// Verify, and calls the handler with the Identity in its context
// (IdentityFrom). Failures end the call before the handler runs (so before
// any request message is decoded) with the error Verify returns.
//
// For streams the check happens once, when the stream opens: a stream
// outlives its access token's expiry, and revocation ends it only through
// the Service's OnRevoke hook.
//
// Install it before interceptors that read request messages (validation),
// so unauthenticated callers cannot make the server decode payloads.
func (v *Verifier) Interceptor() connect.ServerInterceptor {
	return func(next connect.ServerFunc) connect.ServerFunc {
		return func(ctx context.Context, spec connect.Spec, stream connect.ServerStream) error {
			if isPublic(spec.Procedure) {
				return next(ctx, spec, stream)
			}
			var header string
			if info, ok := connect.CallInfoForServerContext(ctx); ok {
				header = info.RequestHeader().Get("Authorization")
			}
			token, ok := bearerToken(header)
			if !ok {
				return connect.NewError(connect.CodeUnauthenticated, msgMissingToken)
			}
			id, err := v.Verify(ctx, token)
			if err != nil {
				return err
			}
			return next(WithIdentity(ctx, id), spec, stream)
		}
	}
}

// Verify checks an access token (without the "Bearer " prefix) and that
// its device is not revoked, and returns who it belongs to. Errors:
//   - Unauthenticated "access token expired": a genuine token past its exp;
//     the client should Refresh.
//   - Unauthenticated "invalid access token": malformed, tampered, signed
//     with another key or algorithm, or naming a device of another user.
//   - Unauthenticated "session revoked": the device was signed out or its
//     refresh token was reused (or the device no longer exists); the
//     client must log in again.
//   - ctx's error when ctx ended during the store lookup.
//   - Unavailable or Internal (generic message; cause logged) when the
//     store cannot answer. Verify fails closed.
//
// A live device's state is cached for Config.DeviceCacheTTL, so in a
// cluster a device revoked on another node is accepted here until its
// cache entry expires (at most DeviceCacheTTL).
func (v *Verifier) Verify(ctx context.Context, token string) (Identity, error) {
	id, err := v.signer.parse(token)
	switch {
	case errors.Is(err, errTokenExpired):
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, msgExpiredToken)
	case err != nil:
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, msgInvalidToken)
	}
	if e, ok := v.cache.get(id.DeviceID); ok {
		return v.check(ctx, id, e)
	}
	d, err := v.devices.GetDevice(ctx, id.DeviceID)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		// A correctly signed token for a device the store does not know:
		// the store was reset or the device deleted. Either way the
		// session is gone.
		v.cache.putRevoked(id.DeviceID)
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, msgSessionRevoked)
	case err != nil:
		return Identity{}, storeError(ctx, v.logger, "authenticate", id.UserID, err)
	case !d.RevokedAt.IsZero():
		v.cache.putRevoked(d.ID)
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, msgSessionRevoked)
	}
	v.cache.putLive(d.ID, d.UserID)
	return v.check(ctx, id, cacheEntry{userID: d.UserID})
}

// check compares a token's identity with what is known of its device.
func (v *Verifier) check(ctx context.Context, id Identity, e cacheEntry) (Identity, error) {
	if e.revoked {
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, msgSessionRevoked)
	}
	if e.userID != id.UserID {
		// Only we can sign tokens, so this is a bug or a leaked key, not
		// a client mistake: worth an operator's attention.
		v.logger.LogAttrs(ctx, slog.LevelError, "auth: access token names a device of another user",
			slog.String("user_id", id.UserID))
		return Identity{}, connect.NewError(connect.CodeUnauthenticated, msgInvalidToken)
	}
	return id, nil
}

// revoked records a revocation made through this node, so that the
// device's access tokens stop working here at once.
func (v *Verifier) revoked(deviceID string) {
	v.cache.putRevoked(deviceID)
}

// isPublic reports whether procedure needs no access token.
func isPublic(procedure string) bool {
	if publicProcedures[procedure] {
		return true
	}
	for _, p := range publicPrefixes {
		if strings.HasPrefix(procedure, p) {
			return true
		}
	}
	return false
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header. The scheme is case-insensitive (RFC 7235 §2.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
