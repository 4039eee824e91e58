package auth_test

import (
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connectproto"
	"github.com/stretchr/testify/require"
	"google.golang.org/genproto/googleapis/rpc/errdetails"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/server/auth"
)

// requireRetryLater asserts err is the rate limit's ResourceExhausted with
// a RetryInfo detail of wantDelay.
func requireRetryLater(t *testing.T, err error, wantDelay time.Duration) {
	t.Helper()
	requireConnectError(t, err, connect.CodeResourceExhausted, "too many attempts, retry later")
	var ce *connect.Error
	require.ErrorAs(t, err, &ce)
	require.Len(t, ce.Details(), 1)
	msg, derr := connectproto.UnmarshalErrorDetail(ce.Details()[0])
	require.NoError(t, derr)
	info, ok := msg.(*errdetails.RetryInfo)
	require.True(t, ok, "detail is %T", msg)
	require.Equal(t, wantDelay, info.GetRetryDelay().AsDuration())
}

func TestLoginFailureLimit(t *testing.T) {
	t.Parallel()
	const burst = 3
	tests := []struct {
		name     string
		username string // the one attacked; "alice" exists
		login    string // how the attacker spells it
		disabled bool
	}{
		{name: "known_username", username: "alice", login: "alice"},
		{name: "unknown_username_same_answer", username: "mallory", login: "mallory"},
		{name: "case_insensitive", username: "alice", login: "ALICE"},
		{name: "disabled", username: "alice", login: "alice", disabled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *auth.Config) {
				c.LoginFailureBurst, c.LoginFailureInterval = burst, time.Minute
				c.AddressAttemptBurst = 0
				if tt.disabled {
					c.LoginFailureBurst = 0
				}
			})
			e.register(t, "alice")
			e.register(t, "bob")
			login := func(username, pw string) error {
				_, err := e.auth.Login(t.Context(), &parleyv1.LoginRequest{Username: username, Password: pw})
				return err
			}
			for range burst {
				requireConnectError(t, login(tt.login, "wrong"), connect.CodeUnauthenticated, "invalid username or password")
			}
			if tt.disabled {
				requireConnectError(t, login(tt.login, "wrong"), connect.CodeUnauthenticated, "invalid username or password")
				require.NoError(t, login("alice", password))
				return
			}
			// Limited, right password or not, known username or not.
			requireRetryLater(t, login(tt.login, "wrong"), time.Minute)
			requireRetryLater(t, login(tt.username, password), time.Minute)
			// Other usernames are not.
			require.NoError(t, login("bob", password))

			e.clock.Advance(30 * time.Second)
			requireRetryLater(t, login(tt.username, password), 30*time.Second)
			e.clock.Advance(30 * time.Second)
			// One attempt is back; failing it spends it again.
			requireConnectError(t, login(tt.login, "wrong"), connect.CodeUnauthenticated, "invalid username or password")
			requireRetryLater(t, login(tt.login, "wrong"), time.Minute)
			e.clock.Advance(time.Minute)
			if tt.username == "alice" {
				require.NoError(t, login(tt.login, password), "the owner gets back in once the wait is over")
				require.NoError(t, login(tt.login, password), "successes spend nothing")
			}
		})
	}
}

func TestAddressAttemptLimit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		burst    int
		attempts []string // "r" Register, "l" Login, in order
		limited  int      // index of the first limited attempt; -1 none
	}{
		{name: "register_and_login_share_the_budget", burst: 3, attempts: []string{"r", "l", "l", "l"}, limited: 3},
		{name: "register_limited", burst: 2, attempts: []string{"r", "r", "r"}, limited: 2},
		{name: "disabled", burst: 0, attempts: []string{"r", "l", "l", "l", "l", "r"}, limited: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(c *auth.Config) {
				c.AddressAttemptBurst, c.AddressAttemptInterval = tt.burst, time.Second
				c.LoginFailureBurst = 0
			})
			call := func(i int, kind string) error {
				if kind == "r" {
					_, err := e.auth.Register(t.Context(), &parleyv1.RegisterRequest{Username: "user" + string(rune('a'+i)), Password: password})
					return err
				}
				_, err := e.auth.Login(t.Context(), &parleyv1.LoginRequest{Username: "usera", Password: password})
				return err
			}
			for i, kind := range tt.attempts {
				err := call(i, kind)
				if i == tt.limited {
					requireRetryLater(t, err, time.Second)
					e.clock.Advance(time.Second)
					require.NoError(t, call(i, kind), "allowed again after the interval")
					requireRetryLater(t, call(i+1, kind), time.Second)
					return
				}
				require.NoError(t, err, "attempt %d", i)
			}
			require.Equal(t, -1, tt.limited, "expected a limited attempt")
		})
	}
}

func TestRateLimitConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*auth.Config)
		wantErr string
	}{
		{name: "defaults", mutate: func(*auth.Config) {}},
		{name: "all_disabled", mutate: func(c *auth.Config) { *c = auth.DefaultConfig(); c.LoginFailureBurst, c.AddressAttemptInterval = 0, 0 }},
		{name: "negative_burst", mutate: func(c *auth.Config) { c.LoginFailureBurst = -1 }, wantErr: "login_failure_burst must not be negative"},
		{name: "negative_interval", mutate: func(c *auth.Config) { c.LoginFailureInterval = -time.Second }, wantErr: "login_failure_interval must not be negative"},
		{name: "negative_address_burst", mutate: func(c *auth.Config) { c.AddressAttemptBurst = -1 }, wantErr: "address_attempt_burst must not be negative"},
		{name: "negative_address_interval", mutate: func(c *auth.Config) { c.AddressAttemptInterval = -time.Second }, wantErr: "address_attempt_interval must not be negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := auth.DefaultConfig()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
