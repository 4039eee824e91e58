package blobfs_test

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/blobfs"
	"github.com/parley-im/parley/storage/storagetest/blobtest"
)

func newStore(t *testing.T, dir string) *blobfs.Store {
	t.Helper()
	s, err := blobfs.New(blobfs.Config{Dir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) storage.BlobStore { return newStore(t, t.TempDir()) })
}

// files lists the regular files under dir, relative to it.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, err := filepath.Rel(dir, path)
			if err != nil {
				return err
			}
			out = append(out, rel)
		}
		return nil
	}))
	return out
}

func TestLayout(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newStore(t, dir)
	ctx := t.Context()
	const digest = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	for _, key := range []string{digest, "thumb/" + digest, "a%b"} {
		require.NoError(t, s.Put(ctx, key, strings.NewReader("x"), 1, ""))
	}
	// Failed Puts leave no temporary file behind.
	require.Error(t, s.Put(ctx, "short", strings.NewReader("x"), 2, ""))
	require.Error(t, s.Put(ctx, "long", strings.NewReader("xyz"), 2, ""))

	got := files(t, dir)
	require.Len(t, got, 3)
	names := map[string]bool{}
	for _, f := range got {
		parts := strings.Split(f, string(filepath.Separator))
		require.Len(t, parts, 4, f) // blobs/ab/cd/name
		require.Equal(t, "blobs", parts[0])
		require.Len(t, parts[1], 2)
		require.Len(t, parts[2], 2)
		names[parts[3]] = true
	}
	require.Equal(t, map[string]bool{digest: true, "thumb%2F" + digest: true, "a%25b": true}, names)
	entries, err := os.ReadDir(filepath.Join(dir, "tmp"))
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestReopen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := newStore(t, dir)
	require.NoError(t, s.Put(t.Context(), "k", strings.NewReader("kept"), 4, ""))
	require.NoError(t, s.Close())

	s = newStore(t, dir)
	rc, info, err := s.Open(t.Context(), "k", 1)
	require.NoError(t, err)
	defer rc.Close()
	require.Equal(t, int64(4), info.Size)
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Equal(t, "ept", string(b))
}

func TestStaleUploadsRemoved(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	newStore(t, dir)
	stale := filepath.Join(dir, "tmp", "put-stale")
	fresh := filepath.Join(dir, "tmp", "put-fresh")
	require.NoError(t, os.WriteFile(stale, []byte("x"), 0o600))
	require.NoError(t, os.WriteFile(fresh, []byte("x"), 0o600))
	old := time.Now().Add(-48 * time.Hour)
	require.NoError(t, os.Chtimes(stale, old, old))

	newStore(t, dir)
	require.NoFileExists(t, stale)
	require.FileExists(t, fresh, "an upload another store may be writing")
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s := newStore(t, t.TempDir())
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("x"), 1, ""))
	rc, _, err := s.Open(ctx, "k", 0)
	require.NoError(t, err)
	require.NoError(t, s.Close())

	require.ErrorIs(t, s.Put(ctx, "k2", strings.NewReader("x"), 1, ""), storage.ErrUnavailable)
	_, _, err = s.Open(ctx, "k", 0)
	require.ErrorIs(t, err, storage.ErrUnavailable)
	_, err = s.Stat(ctx, "k")
	require.ErrorIs(t, err, storage.ErrUnavailable)
	require.ErrorIs(t, s.Delete(ctx, "k"), storage.ErrUnavailable)

	// A reader opened before Close still reads.
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Equal(t, "x", string(b))
	require.NoError(t, rc.Close())
}

func TestOpenReaderOutlivesDelete(t *testing.T) {
	t.Parallel()
	s := newStore(t, t.TempDir())
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("old"), 3, ""))
	rc, _, err := s.Open(ctx, "k", 0)
	require.NoError(t, err)
	defer rc.Close()
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("new!"), 4, ""))
	require.NoError(t, s.Delete(ctx, "k"))
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Equal(t, "old", string(b))
}

func TestInvalidKeyError(t *testing.T) {
	t.Parallel()
	s := newStore(t, t.TempDir())
	for _, key := range blobtest.InvalidKeys {
		require.ErrorIs(t, s.Put(t.Context(), key, strings.NewReader("x"), 1, ""), blobfs.ErrInvalidKey, "%q", key)
	}
	require.ErrorIs(t, s.Put(t.Context(), strings.Repeat("k", blobfs.MaxKeyLen+1), strings.NewReader("x"), 1, ""), blobfs.ErrInvalidKey)
	require.NoError(t, s.Put(t.Context(), strings.Repeat("k", blobfs.MaxKeyLen), strings.NewReader("x"), 1, ""))
	// Keys whose encoding is too long for a file name are stored under a
	// hash of the key.
	for _, key := range []string{
		strings.Repeat("a/", 127) + "b",
		strings.Repeat("a/", 128) + "b",
		strings.Repeat("a/", blobfs.MaxKeyLen/2-1) + "bc",
	} {
		require.NoError(t, s.Put(t.Context(), key, strings.NewReader(key), int64(len(key)), ""), len(key))
		rc, _, err := s.Open(t.Context(), key, 0)
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err)
		require.NoError(t, rc.Close())
		require.Equal(t, key, string(b))
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	_, err := blobfs.New(blobfs.Config{})
	require.Error(t, err)

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	_, err = blobfs.New(blobfs.Config{Dir: file})
	require.Error(t, err)

	nested := filepath.Join(t.TempDir(), "a", "b", "media")
	s := newStore(t, nested)
	require.NoError(t, s.Put(context.Background(), "k", strings.NewReader(""), 0, ""))
}

// TestLargeBlobMemory streams 100 MiB in and out: the heap must stay flat.
// Not parallel: other tests' allocations would blur the numbers.
func TestLargeBlobMemory(t *testing.T) {
	s := newStore(t, t.TempDir())
	const size = 100 << 20
	res := blobtest.MeasureLarge(t, s, size)
	t.Logf("100 MiB: Put peak heap %d KiB, allocated %d KiB; Open+read peak heap %d KiB, allocated %d KiB",
		res.Put.PeakHeap>>10, res.Put.TotalAlloc>>10, res.Open.PeakHeap>>10, res.Open.TotalAlloc>>10)
	const limit = 4 << 20
	require.Less(t, res.Put.PeakHeap, uint64(limit))
	require.Less(t, res.Put.TotalAlloc, uint64(limit))
	require.Less(t, res.Open.PeakHeap, uint64(limit))
	require.Less(t, res.Open.TotalAlloc, uint64(limit))
}
