package auth

import "context"

// Identity is who made an authenticated call: the user and the device
// (session) the access token was issued to.
type Identity struct {
	UserID   string
	DeviceID string
}

// identityKey is the context key of an Identity; unexported so only this
// package can set it.
type identityKey struct{}

// WithIdentity returns a copy of ctx carrying id. The interceptor calls it
// for every authenticated call; tests and in-process callers use it to act
// as a user without a token.
func WithIdentity(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, identityKey{}, id)
}

// IdentityFrom returns the identity the interceptor put in ctx. ok is false
// for calls to procedures that need no token (Register, Login, Refresh,
// health, reflection) and for contexts that never passed the interceptor;
// handlers of authenticated procedures can rely on ok being true.
func IdentityFrom(ctx context.Context) (id Identity, ok bool) {
	id, ok = ctx.Value(identityKey{}).(Identity)
	return id, ok
}
