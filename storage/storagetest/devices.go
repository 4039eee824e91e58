package storagetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var deviceTests = []test{
	{"create_and_get", testCreateAndGetDevice},
	{"rotate", testRotate},
	{"rotate_reused_token_revokes", testRotateReused},
	{"rotate_expired_or_unknown", testRotateExpired},
	{"revoke", testRevoke},
}

// hash is a stand-in for a token's SHA-256.
func hash(s string) []byte { return []byte("sha256:" + newID(s)) }

func testCreateAndGetDevice(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	d := f.device(u, hash("t"))

	got, err := s.GetDevice(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Equal(t, d, got)
	require.True(t, got.RevokedAt.IsZero())

	ds, err := s.ListDevices(f.ctx(), u.ID)
	require.NoError(t, err)
	require.Equal(t, []storage.Device{d}, ds)

	_, err = s.GetDevice(f.ctx(), "nothing")
	require.ErrorIs(t, err, storage.ErrNotFound)

	ds, err = s.ListDevices(f.ctx(), "nobody")
	require.NoError(t, err)
	require.Empty(t, ds)
}

func testRotate(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	h1, h2, h3 := hash("t1"), hash("t2"), hash("t3")
	d := f.device(u, h1)

	// next.DeviceID is ignored: the device of the old token is used.
	got, err := s.RotateRefreshToken(f.ctx(), h1, storage.RefreshToken{Hash: h2, DeviceID: "ignored", ExpiresAt: at(7200)}, at(60))
	require.NoError(t, err)
	require.Equal(t, d, got)

	got, err = s.RotateRefreshToken(f.ctx(), h2, storage.RefreshToken{Hash: h3, ExpiresAt: at(7200)}, at(120))
	require.NoError(t, err)
	require.Equal(t, d.ID, got.ID)
}

func testRotateReused(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	h1, h2, h3 := hash("t1"), hash("t2"), hash("t3")
	d := f.device(u, h1)
	other := f.device(u, hash("other"))

	_, err := s.RotateRefreshToken(f.ctx(), h1, storage.RefreshToken{Hash: h2, ExpiresAt: at(7200)}, at(60))
	require.NoError(t, err)

	// h1 is spent: presenting it again means it leaked.
	_, err = s.RotateRefreshToken(f.ctx(), h1, storage.RefreshToken{Hash: h3, ExpiresAt: at(7200)}, at(120))
	require.ErrorIs(t, err, storage.ErrTokenReused)

	got, err := s.GetDevice(f.ctx(), d.ID)
	require.NoError(t, err)
	require.False(t, got.RevokedAt.IsZero(), "the device is revoked by the reuse")

	// The legitimate holder's token dies with the device.
	_, err = s.RotateRefreshToken(f.ctx(), h2, storage.RefreshToken{Hash: hash("t4"), ExpiresAt: at(7200)}, at(180))
	require.ErrorIs(t, err, storage.ErrRevoked)
	// The token the failed rotation carried was never stored.
	_, err = s.RotateRefreshToken(f.ctx(), h3, storage.RefreshToken{Hash: hash("t5"), ExpiresAt: at(7200)}, at(180))
	require.ErrorIs(t, err, storage.ErrNotFound)

	ds, err := s.ListDevices(f.ctx(), u.ID)
	require.NoError(t, err)
	require.Equal(t, []storage.Device{other}, ds, "other devices are untouched")
}

func testRotateExpired(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	h := hash("t")
	d := f.device(u, h) // expires at(3600)

	_, err := s.RotateRefreshToken(f.ctx(), h, storage.RefreshToken{Hash: hash("n"), ExpiresAt: at(9000)}, at(3601))
	require.ErrorIs(t, err, storage.ErrNotFound)

	_, err = s.RotateRefreshToken(f.ctx(), hash("unknown"), storage.RefreshToken{Hash: hash("n"), ExpiresAt: at(9000)}, at(60))
	require.ErrorIs(t, err, storage.ErrNotFound)

	// Neither failure revoked the device.
	got, err := s.GetDevice(f.ctx(), d.ID)
	require.NoError(t, err)
	require.True(t, got.RevokedAt.IsZero())
}

func testRevoke(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()
	h := hash("t")
	d := f.device(u, h)

	require.NoError(t, s.RevokeDevice(f.ctx(), d.ID, at(60)))
	got, err := s.GetDevice(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Equal(t, at(60), got.RevokedAt)

	// Idempotent: the first revocation time stays.
	require.NoError(t, s.RevokeDevice(f.ctx(), d.ID, at(120)))
	got, err = s.GetDevice(f.ctx(), d.ID)
	require.NoError(t, err)
	require.Equal(t, at(60), got.RevokedAt)

	_, err = s.RotateRefreshToken(f.ctx(), h, storage.RefreshToken{Hash: hash("n"), ExpiresAt: at(7200)}, at(180))
	require.ErrorIs(t, err, storage.ErrRevoked)

	ds, err := s.ListDevices(f.ctx(), u.ID)
	require.NoError(t, err)
	require.Empty(t, ds)

	require.ErrorIs(t, s.RevokeDevice(f.ctx(), "nothing", at(60)), storage.ErrNotFound)
}
