package storage_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

func TestIsSentinel(t *testing.T) {
	t.Parallel()
	require.True(t, storage.IsSentinel(storage.ErrTokenReused))
	require.True(t, storage.IsSentinel(fmt.Errorf("embedded: get user: %w", storage.ErrNotFound)))
	require.False(t, storage.IsSentinel(errors.New("disk full")))
	require.False(t, storage.IsSentinel(nil))
}
