package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Store {
		s, err := embedded.Open(t.Context(), embedded.Config{Path: filepath.Join(t.TempDir(), "parley.db")})
		require.NoError(t, err)
		return s
	})
}
