package e2e_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

// TestAccessTokens: calls without a valid access token are Unauthenticated,
// on unary calls and on the stream alike.
func TestAccessTokens(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	alice := newUser(t, p.URL(), "alice", 2)
	raw := newRawClients(t, p.URL())
	valid := alice.dev(0).client.Credentials().AccessToken

	revokedDevice := alice.dev(1).client
	revokedToken := revokedDevice.Credentials().AccessToken
	require.NoError(t, revokedDevice.Logout(t.Context()))

	tamper := func(tok string) string {
		parts := strings.Split(tok, ".")
		require.Len(t, parts, 3, "a JWT")
		sig := []byte(parts[2])
		if sig[0] == 'A' {
			sig[0] = 'B'
		} else {
			sig[0] = 'A'
		}
		return parts[0] + "." + parts[1] + "." + string(sig)
	}
	tests := []struct {
		name  string
		token string
	}{
		{name: "missing", token: ""},
		{name: "garbage", token: "not-a-token"},
		{name: "tampered_signature", token: tamper(valid)},
		{name: "tampered_claims", token: strings.Replace(valid, ".", ".e30", 1)},
		{name: "refresh_token_as_access_token", token: alice.dev(0).client.Credentials().RefreshToken},
		{name: "revoked_by_logout", token: revokedToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := withBearer(t.Context(), tt.token)
			_, err := raw.conv.ListConversations(ctx, &parleyv1.ListConversationsRequest{})
			require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "unary: %v", err)

			stream, err := raw.chat.Connect(withBearer(t.Context(), tt.token))
			require.NoError(t, err)
			defer stream.Close()
			require.NoError(t, stream.SendHeaders())
			_, err = stream.Receive()
			require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "stream: %v", err)
		})
	}
	t.Run("valid", func(t *testing.T) {
		_, err := raw.conv.ListConversations(withBearer(t.Context(), valid), &parleyv1.ListConversationsRequest{})
		require.NoError(t, err)
	})
	t.Run("logged_out_client_is_revoked", func(t *testing.T) {
		_, err := revokedDevice.Conversations().ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
		require.ErrorIs(t, err, parley.ErrRevoked)
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
	})
	t.Run("other_device_unaffected", func(t *testing.T) {
		_, err := alice.dev(0).client.Conversations().ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
		require.NoError(t, err)
	})
	t.Run("wrong_password", func(t *testing.T) {
		_, err := parley.Login(t.Context(), p.URL(), "alice", "wrong password")
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
		_, err = parley.Login(t.Context(), p.URL(), "nobody", "wrong password")
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "unknown users look the same")
	})
	t.Run("username_taken", func(t *testing.T) {
		_, err := parley.Register(t.Context(), p.URL(), "alice", password)
		require.Equal(t, connect.CodeAlreadyExists, connect.CodeOf(err))
	})
}

// TestExpiredAccessToken: an expired access token is Unauthenticated; the SDK
// refreshes it transparently, for unary calls and for its stream.
func TestExpiredAccessToken(t *testing.T) {
	t.Parallel()
	p := startParleyd(t, "-access-ttl", "1s")
	raw := newRawClients(t, p.URL())
	saved := make(chan parley.Credentials, 16)
	alice := newUser(t, p.URL(), "alice", 1,
		parley.WithRefreshSkew(0), // only the reactive path: wait for the server to say "expired"
		parley.WithCredentialsHook(func(c parley.Credentials) { saved <- c }))
	bob := newUser(t, p.URL(), "bob", 1)
	dm := createDirect(t, bob, alice)
	creds := alice.client().Credentials()

	require.Eventually(t, func() bool {
		_, err := raw.conv.ListConversations(withBearer(t.Context(), creds.AccessToken), &parleyv1.ListConversationsRequest{})
		return connect.CodeOf(err) == connect.CodeUnauthenticated && isExpired(err)
	}, waitTimeout, 50*time.Millisecond, "the access token expires")

	res, err := alice.client().Conversations().ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
	require.NoError(t, err, "the SDK refreshed and retried")
	require.Len(t, res.GetConversations(), 1)
	fresh := <-saved
	require.NotEqual(t, creds.RefreshToken, fresh.RefreshToken)
	require.Equal(t, fresh, alice.client().Credentials())

	// The stream opens with an expired token too: the Session refreshes
	// and reconnects.
	require.Eventually(t, func() bool {
		_, err := raw.conv.ListConversations(withBearer(t.Context(), fresh.AccessToken), &parleyv1.ListConversationsRequest{})
		return isExpired(err)
	}, waitTimeout, 50*time.Millisecond)
	alice.dev(0).connect(t)
	bob.dev(0).connect(t)
	m, err := bob.dev(0).session.Send(t.Context(), dm, text("hi"))
	require.NoError(t, err)
	alice.dev(0).rec.waitSeq(t, dm, m.GetSeq())
}

func isExpired(err error) bool {
	var cerr *connect.Error
	return errors.As(err, &cerr) && cerr.Code() == connect.CodeUnauthenticated && strings.Contains(cerr.Message(), "expired")
}

// TestRefreshTokenReuse: presenting a spent refresh token is Unauthenticated
// and revokes the device's session: its newer tokens stop working and its
// live stream ends.
func TestRefreshTokenReuse(t *testing.T) {
	t.Parallel()
	p := startParleyd(t)
	raw := newRawClients(t, p.URL())
	alice := newUser(t, p.URL(), "alice", 2)
	victim := alice.dev(0)
	victim.connect(t)
	spent := victim.client.Credentials()
	require.NoError(t, victim.client.Refresh(t.Context()))
	current := victim.client.Credentials()
	require.NotEqual(t, spent.RefreshToken, current.RefreshToken)

	_, err := raw.auth.Refresh(t.Context(), &parleyv1.RefreshRequest{RefreshToken: spent.RefreshToken})
	require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err), "reuse: %v", err)

	t.Run("newer_refresh_token_revoked", func(t *testing.T) {
		_, err := raw.auth.Refresh(t.Context(), &parleyv1.RefreshRequest{RefreshToken: current.RefreshToken})
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
	})
	t.Run("newer_access_token_revoked", func(t *testing.T) {
		_, err := raw.conv.ListConversations(withBearer(t.Context(), current.AccessToken), &parleyv1.ListConversationsRequest{})
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
	})
	t.Run("live_stream_ends", func(t *testing.T) {
		final := waitEvent(t, victim.rec, "final disconnect", func(e *parley.DisconnectedEvent) bool { return e.Final })
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(final.Err), "%v", final.Err)
		<-victim.session.Done()
		require.Error(t, victim.session.Err())
	})
	t.Run("other_device_unaffected", func(t *testing.T) {
		_, err := alice.dev(1).client.Conversations().ListConversations(t.Context(), &parleyv1.ListConversationsRequest{})
		require.NoError(t, err)
	})
	t.Run("unauthenticated_auth_calls", func(t *testing.T) {
		for _, tok := range []string{"", "garbage"} {
			_, err := raw.auth.Refresh(t.Context(), &parleyv1.RefreshRequest{RefreshToken: tok})
			require.Contains(t, []connect.Code{connect.CodeUnauthenticated, connect.CodeInvalidArgument}, connect.CodeOf(err))
		}
		_, err := raw.auth.Logout(context.Background(), &parleyv1.LogoutRequest{})
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(err))
	})
}
