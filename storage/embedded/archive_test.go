package embedded_test

import (
	"path/filepath"
	"testing"

	"github.com/parley-im/parley/storage/storagetest"
)

func TestArchiveConformance(t *testing.T) {
	t.Parallel()
	storagetest.RunArchive(t, func(t *testing.T) storagetest.ArchiveStore {
		return open(t, filepath.Join(t.TempDir(), "parley.db"))
	})
}
