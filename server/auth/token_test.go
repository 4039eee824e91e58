package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"
)

func newTestSigner(t *testing.T, clock *fakeClock) *signer {
	t.Helper()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	return newSigner(key, 15*time.Minute, clock.Now)
}

// forge signs claims with any method and key, the way an attacker would.
func forge(t *testing.T, method jwt.SigningMethod, key any, claims jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	require.NoError(t, err)
	return s
}

func TestSignerRoundTrip(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSigner(t, clock)

	token, exp, err := s.sign("user-1", "device-1")
	require.NoError(t, err)
	wantExp := clock.Now().Add(15 * time.Minute)
	require.Equal(t, wantExp, exp)

	id, err := s.parse(token)
	require.NoError(t, err)
	require.Equal(t, Identity{UserID: "user-1", DeviceID: "device-1"}, id)

	// The claims the brief promises, as any JWT library sees them.
	var claims jwt.MapClaims
	_, _, err = jwt.NewParser().ParseUnverified(token, &claims)
	require.NoError(t, err)
	require.Equal(t, "parley", claims["iss"])
	require.Equal(t, "user-1", claims["sub"])
	require.Equal(t, "device-1", claims["did"])
	require.NotEmpty(t, claims["jti"])
	require.InDelta(t, float64(clock.Now().Unix()), claims["iat"], 0)
	require.InDelta(t, float64(exp.Unix()), claims["exp"], 0)

	other, _, err := s.sign("user-1", "device-1")
	require.NoError(t, err)
	require.NotEqual(t, token, other, "jti makes every token unique")
}

func TestSignerRejects(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSigner(t, clock)
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)

	valid := func() accessClaims {
		now := clock.Now()
		return accessClaims{
			RegisteredClaims: jwt.RegisteredClaims{
				Issuer:    issuer,
				Subject:   "user-1",
				IssuedAt:  jwt.NewNumericDate(now),
				ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)),
				ID:        "jti",
			},
			DeviceID: "device-1",
		}
	}
	with := func(f func(*accessClaims)) accessClaims {
		c := valid()
		f(&c)
		return c
	}
	good := forge(t, jwt.SigningMethodEdDSA, s.key, valid())
	parts := strings.Split(good, ".")

	tests := []struct {
		name  string
		token string
		want  error
	}{
		{name: "empty", token: "", want: errTokenInvalid},
		{name: "garbage", token: "not.a.jwt", want: errTokenInvalid},
		{name: "two_segments", token: parts[0] + "." + parts[1], want: errTokenInvalid},
		{name: "tampered_signature", token: parts[0] + "." + parts[1] + "." + flipChar(parts[2], 10), want: errTokenInvalid},
		{name: "tampered_payload", token: parts[0] + "." + reencode(t, parts[1], `"user-1"`, `"user-2"`) + "." + parts[2], want: errTokenInvalid},
		{name: "alg_none", token: forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid()), want: errTokenInvalid},
		// The classic confusion attack: HMAC keyed with the public key.
		{name: "alg_hs256_with_public_key", token: forge(t, jwt.SigningMethodHS256, []byte(s.pub), valid()), want: errTokenInvalid},
		{name: "other_key", token: forge(t, jwt.SigningMethodEdDSA, otherKey, valid()), want: errTokenInvalid},
		{name: "wrong_issuer", token: forge(t, jwt.SigningMethodEdDSA, s.key, with(func(c *accessClaims) { c.Issuer = "other" })), want: errTokenInvalid},
		{name: "no_expiry", token: forge(t, jwt.SigningMethodEdDSA, s.key, with(func(c *accessClaims) { c.ExpiresAt = nil })), want: errTokenInvalid},
		{name: "no_subject", token: forge(t, jwt.SigningMethodEdDSA, s.key, with(func(c *accessClaims) { c.Subject = "" })), want: errTokenInvalid},
		{name: "no_device", token: forge(t, jwt.SigningMethodEdDSA, s.key, with(func(c *accessClaims) { c.DeviceID = "" })), want: errTokenInvalid},
		{name: "expired", token: forge(t, jwt.SigningMethodEdDSA, s.key, with(func(c *accessClaims) {
			c.ExpiresAt = jwt.NewNumericDate(clock.Now().Add(-time.Second))
		})), want: errTokenExpired},
		{name: "expires_now", token: forge(t, jwt.SigningMethodEdDSA, s.key, with(func(c *accessClaims) {
			c.ExpiresAt = jwt.NewNumericDate(clock.Now())
		})), want: errTokenExpired},
		// Expiry is reported only for genuine tokens; a forged expired
		// token is just invalid.
		{name: "expired_other_key", token: forge(t, jwt.SigningMethodEdDSA, otherKey, with(func(c *accessClaims) {
			c.ExpiresAt = jwt.NewNumericDate(clock.Now().Add(-time.Second))
		})), want: errTokenInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := s.parse(tt.token)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

func TestSignerExpiresWithClock(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	s := newTestSigner(t, clock)
	token, _, err := s.sign("u", "d")
	require.NoError(t, err)

	clock.Advance(15*time.Minute - time.Second)
	_, err = s.parse(token)
	require.NoError(t, err, "valid until its last second")

	clock.Advance(time.Second)
	_, err = s.parse(token)
	require.ErrorIs(t, err, errTokenExpired)
}

func TestRefreshToken(t *testing.T) {
	t.Parallel()
	token, hash, err := newRefreshToken("0199a-device")
	require.NoError(t, err)
	device, secret, ok := strings.Cut(token, ".")
	require.True(t, ok)
	require.Equal(t, "0199a-device", device)
	raw, err := base64.RawURLEncoding.DecodeString(secret)
	require.NoError(t, err)
	require.Len(t, raw, refreshTokenBytes)
	require.Len(t, hash, 32)
	require.Equal(t, hash, hashRefreshToken(token), "hash is deterministic")

	other, otherHash, err := newRefreshToken("0199a-device")
	require.NoError(t, err)
	require.NotEqual(t, token, other)
	require.NotEqual(t, hash, otherHash)
}

func TestRefreshTokenDevice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		token  string
		want   string
		wantOK bool
	}{
		{name: "uuid", token: "0199a3b2-7c1e-7000-8000-000000000000.c2VjcmV0", want: "0199a3b2-7c1e-7000-8000-000000000000", wantOK: true},
		{name: "device_id_with_dots", token: "a.b.c2VjcmV0", want: "a.b", wantOK: true},
		{name: "no_dot", token: "c2VjcmV0", wantOK: false},
		{name: "no_device", token: ".c2VjcmV0", wantOK: false},
		{name: "no_secret", token: "device.", wantOK: false},
		{name: "empty", token: "", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := refreshTokenDevice(tt.token)
			require.Equal(t, tt.wantOK, ok)
			require.Equal(t, tt.want, got)
		})
	}
}

// flipChar changes the i-th character of a base64url string to another
// valid one. (Not the last: its low bits may be padding.)
func flipChar(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

// reencode replaces old with new inside a base64url JWT segment.
func reencode(t *testing.T, segment, old, new string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(segment)
	require.NoError(t, err)
	replaced := strings.Replace(string(raw), old, new, 1)
	require.NotEqual(t, string(raw), replaced)
	return base64.RawURLEncoding.EncodeToString([]byte(replaced))
}
