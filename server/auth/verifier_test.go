package auth

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

func TestIsPublic(t *testing.T) {
	t.Parallel()
	tests := []struct {
		procedure string
		want      bool
	}{
		{procedure: parleyv1connect.AuthServiceRegisterProcedure, want: true},
		{procedure: parleyv1connect.AuthServiceLoginProcedure, want: true},
		{procedure: parleyv1connect.AuthServiceRefreshProcedure, want: true},
		{procedure: parleyv1connect.AuthServiceLogoutProcedure, want: false},
		{procedure: "/grpc.health.v1.Health/Check", want: true},
		{procedure: "/grpc.health.v1.Health/Watch", want: true},
		{procedure: "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", want: true},
		{procedure: "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", want: true},
		{procedure: parleyv1connect.ChatServiceConnectProcedure, want: false},
		{procedure: parleyv1connect.ConversationServiceLookupUserProcedure, want: false},
		{procedure: "/grpc.health.v1.HealthX/Check", want: false},
		{procedure: "/parley.v1.AuthService/RegisterAdmin", want: false},
		{procedure: "", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.procedure, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, isPublic(tt.procedure))
		})
	}
}

func TestBearerToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		header    string
		wantToken string
		wantOK    bool
	}{
		{name: "bearer", header: "Bearer abc.def.ghi", wantToken: "abc.def.ghi", wantOK: true},
		{name: "scheme_case_insensitive", header: "bearer abc", wantToken: "abc", wantOK: true},
		{name: "extra_spaces", header: "  Bearer   abc  ", wantToken: "abc", wantOK: true},
		{name: "empty", header: "", wantOK: false},
		{name: "scheme_only", header: "Bearer", wantOK: false},
		{name: "scheme_and_space", header: "Bearer   ", wantOK: false},
		{name: "basic", header: "Basic dXNlcjpwYXNz", wantOK: false},
		{name: "token_without_scheme", header: "abc.def.ghi", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			token, ok := bearerToken(tt.header)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.wantToken, token)
		})
	}
}

// TestLoginUnknownUserDoesTheHashWork shows that a Login for a username
// that does not exist still runs a password hash (so it costs what a real
// one does): with every hashing slot taken it waits for one, exactly like
// a Login of an existing user, instead of failing fast.
func TestLoginUnknownUserDoesTheHashWork(t *testing.T) {
	t.Parallel()
	store := newMemStore()
	cfg := fastConfig()
	cfg.MaxConcurrentHashes = 1
	s, err := New(cfg, t.TempDir(), store, nil, nil)
	require.NoError(t, err)
	_, err = s.Register(t.Context(), &parleyv1.RegisterRequest{Username: "alice", Password: "password1"})
	require.NoError(t, err)

	tests := []struct {
		name     string
		username string
	}{
		{name: "unknown_user", username: "mallory"},
		{name: "known_user", username: "alice"},
	}
	s.hashSlots <- struct{}{} // occupy the only slot
	t.Cleanup(func() { <-s.hashSlots })
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			_, err := s.Login(ctx, &parleyv1.LoginRequest{Username: tt.username, Password: "wrong-password"})
			require.ErrorIs(t, err, context.Canceled)
		})
	}
}
