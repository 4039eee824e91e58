package storagetest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// FirstUserStore is a store that remembers its first user: the admin the
// AdminService always admits.
type FirstUserStore interface {
	storage.Store
	// FirstUserID returns the id of the first user created, or
	// ErrNotFound while there is none. Once set it never changes.
	FirstUserID(ctx context.Context) (string, error)
}

// RunFirstUser checks FirstUserID on fresh, empty stores from newStore:
// none before any user; exactly one of many registrations racing for an
// empty store, the same from then on; a failed registration (username
// taken) never becomes it.
func RunFirstUser(t *testing.T, newStore func(t *testing.T) FirstUserStore) {
	t.Run("none_then_first_forever", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := context.Background()
		_, err := s.FirstUserID(ctx)
		require.ErrorIs(t, err, storage.ErrNotFound)

		// A later CreatedAt wins if it commits first: first is by commit,
		// not by the clock.
		alice := storage.User{ID: newID("user"), Username: "alice", DisplayName: "A", PasswordHash: "h", CreatedAt: at(10)}
		require.NoError(t, s.CreateUser(ctx, alice))
		dup := storage.User{ID: newID("user"), Username: "alice", DisplayName: "A2", PasswordHash: "h", CreatedAt: at(1)}
		require.ErrorIs(t, s.CreateUser(ctx, dup), storage.ErrConflict)
		bob := storage.User{ID: newID("user"), Username: "bob", DisplayName: "B", PasswordHash: "h", CreatedAt: at(1)}
		require.NoError(t, s.CreateUser(ctx, bob))

		id, err := s.FirstUserID(ctx)
		require.NoError(t, err)
		require.Equal(t, alice.ID, id)
	})
	t.Run("racing_registrations_make_one", func(t *testing.T) {
		t.Parallel()
		s := newStore(t)
		ctx := context.Background()
		const n = 16
		ids := make(map[string]bool, n)
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i := range n {
			u := storage.User{ID: newID("user"), Username: fmt.Sprintf("racer%d", i), DisplayName: "r", PasswordHash: "h", CreatedAt: time.Now()}
			ids[u.ID] = true
			wg.Go(func() {
				<-start
				// Errors (none expected) are checked through the users
				// found below.
				_ = s.CreateUser(ctx, u)
			})
		}
		close(start)
		wg.Wait()
		users, err := s.GetUsers(ctx, mapKeys(ids))
		require.NoError(t, err)
		require.Len(t, users, n)
		first, err := s.FirstUserID(ctx)
		require.NoError(t, err)
		require.True(t, ids[first], "first user %q is none of the racers", first)
	})
}

func mapKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
