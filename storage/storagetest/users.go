package storagetest

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

var userTests = []test{
	{"create_and_get", testCreateAndGetUser},
	{"username_conflict", testUsernameConflict},
	{"not_found", testUserNotFound},
	{"get_users_skips_unknown", testGetUsers},
}

func testCreateAndGetUser(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()

	got, err := s.GetUser(f.ctx(), u.ID)
	require.NoError(t, err)
	require.Equal(t, u, got)

	got, err = s.GetUserByUsername(f.ctx(), u.Username)
	require.NoError(t, err)
	require.Equal(t, u, got)
}

func testUsernameConflict(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	u := f.user()

	dup := storage.User{ID: newID("user"), Username: u.Username, DisplayName: "other", PasswordHash: "h", CreatedAt: at(1)}
	require.ErrorIs(t, s.CreateUser(f.ctx(), dup), storage.ErrConflict)

	_, err := s.GetUser(f.ctx(), dup.ID)
	require.ErrorIs(t, err, storage.ErrNotFound)
	got, err := s.GetUserByUsername(f.ctx(), u.Username)
	require.NoError(t, err)
	require.Equal(t, u.ID, got.ID)
}

func testUserNotFound(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	f.user()

	_, err := s.GetUser(f.ctx(), "nobody")
	require.ErrorIs(t, err, storage.ErrNotFound)
	_, err = s.GetUserByUsername(f.ctx(), "nobody")
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testGetUsers(t *testing.T, s storage.Store) {
	f := newFixture(t, s)
	us := f.users(3)

	got, err := s.GetUsers(f.ctx(), []string{us[2].ID, "nobody", us[0].ID})
	require.NoError(t, err)
	require.ElementsMatch(t, []storage.User{us[0], us[2]}, got)

	got, err = s.GetUsers(f.ctx(), nil)
	require.NoError(t, err)
	require.Empty(t, got)

	got, err = s.GetUsers(f.ctx(), []string{"nobody"})
	require.NoError(t, err)
	require.Empty(t, got)
}
