package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// issuer is the iss claim of every access token.
const issuer = "parley"

// refreshTokenBytes is the entropy of a refresh token.
const refreshTokenBytes = 32

// errTokenExpired and errTokenInvalid are what parseAccessToken returns;
// the interceptor turns them into Unauthenticated with matching messages.
var (
	errTokenExpired = errors.New("access token expired")
	errTokenInvalid = errors.New("invalid access token")
)

// accessClaims is the payload of an access token.
type accessClaims struct {
	jwt.RegisteredClaims
	// DeviceID is the device (session) the token was issued to.
	DeviceID string `json:"did"`
}

// signer issues and checks access tokens with one Ed25519 key pair.
// It is immutable and safe for concurrent use.
type signer struct {
	key    ed25519.PrivateKey
	pub    ed25519.PublicKey
	now    func() time.Time
	ttl    time.Duration
	parser *jwt.Parser
}

func newSigner(key ed25519.PrivateKey, ttl time.Duration, now func() time.Time) *signer {
	return &signer{
		key: key,
		pub: key.Public().(ed25519.PublicKey),
		now: now,
		ttl: ttl,
		parser: jwt.NewParser(
			// Pinning the algorithm is what stops "alg: none" and HS256
			// tokens keyed with our public key from being accepted.
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithIssuer(issuer),
			jwt.WithExpirationRequired(),
			jwt.WithTimeFunc(now),
		),
	}
}

// sign returns a new access token for a device and its expiry. The expiry
// is truncated to the second because JWT times are whole seconds, so what
// the client is told matches what the server enforces.
func (s *signer) sign(userID, deviceID string) (string, time.Time, error) {
	now := s.now().UTC().Truncate(time.Second)
	exp := now.Add(s.ttl)
	jti, err := uuid.NewRandom()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token id: %w", err)
	}
	claims := accessClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    issuer,
			Subject:   userID,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
			ID:        jti.String(),
		},
		DeviceID: deviceID,
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims).SignedString(s.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign access token: %w", err)
	}
	return signed, exp, nil
}

// parse checks an access token's signature, algorithm, issuer and expiry
// and returns its identity. Errors are errTokenExpired or errTokenInvalid;
// the jwt library's reason is deliberately dropped because it is not
// something a client can act on.
func (s *signer) parse(token string) (Identity, error) {
	var claims accessClaims
	_, err := s.parser.ParseWithClaims(token, &claims, func(*jwt.Token) (any, error) {
		return s.pub, nil
	})
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		// The library reports expiry only after the signature verified, so
		// a forged token cannot claim to be merely expired.
		return Identity{}, errTokenExpired
	case err != nil:
		return Identity{}, errTokenInvalid
	case claims.Subject == "" || claims.DeviceID == "":
		return Identity{}, errTokenInvalid
	}
	return Identity{UserID: claims.Subject, DeviceID: claims.DeviceID}, nil
}

// newRefreshToken returns a new refresh token for a device and the hash
// under which the store keeps it. The token is "<device id>.<32 random
// bytes, base64url>": opaque to clients, but it lets the Service name the
// device when the store reports reuse or revocation, which
// storage.DeviceStore does without returning the device.
func newRefreshToken(deviceID string) (token string, hash []byte, err error) {
	b := make([]byte, refreshTokenBytes)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("refresh token: %w", err)
	}
	token = deviceID + "." + base64.RawURLEncoding.EncodeToString(b)
	return token, hashRefreshToken(token), nil
}

// refreshTokenDevice returns the device id a refresh token names. The
// result is only a claim: it can be trusted once the store has matched the
// token's hash, which covers the whole token, device id included.
func refreshTokenDevice(token string) (string, bool) {
	// Cut at the last dot: base64url has none, so the device id may.
	i := strings.LastIndexByte(token, '.')
	if i <= 0 || i == len(token)-1 {
		return "", false
	}
	return token[:i], true
}

// hashRefreshToken is the stored form of a refresh token. A plain SHA-256
// suffices (no salt, no stretching) because the token carries 256 random
// bits, not a guessable password; it must be deterministic so the store
// can look the token up by it.
func hashRefreshToken(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}
