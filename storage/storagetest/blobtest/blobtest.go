// Package blobtest is the conformance suite of storage.BlobStore: every
// backend's tests call Run, so the directory store and the S3 store keep
// the contract media.go documents. Only tests import it.
//
// Besides that contract, the suite pins down what the backends agree on
// where media.go is silent, so the media service sees one behaviour:
//
//   - A blob may be empty (size 0).
//   - Open with an offset outside 0..size is an error (not ErrNotFound).
//   - Keys are clean relative slash-separated paths of UTF-8 text: "a/b"
//     and "a" are two independent keys; "", "/a", "a/", "a//b", "./a",
//     "a/../b", backslashes and control characters are refused by every
//     call, with an error that is not ErrNotFound.
//   - A call whose ctx has already ended returns ctx's error (errors.Is)
//     and changes nothing; a Put whose ctx ends while it reads stores
//     nothing.
//
// Behaviour a backend owns alone (files on disk, multipart uploads left
// behind, Close making calls fail) is tested in the backend's package.
package blobtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

const (
	// MultipartSize is the suite's large blob: one byte over 5 MiB, S3's
	// smallest part size. An S3 store under test should use 5 MiB parts
	// so that this blob takes two.
	MultipartSize = 5<<20 + 1

	// clockSkew bounds how far a backend's ModTime may stray from the
	// test's clock (S3 servers keep whole seconds).
	clockSkew = 2 * time.Second
)

// test is one conformance test; it gets a fresh, empty store.
type test struct {
	name string
	fn   func(t *testing.T, s storage.BlobStore)
}

var tests = []test{
	{"round_trip", testRoundTrip},
	{"overwrite", testOverwrite},
	{"open_offsets", testOpenOffsets},
	{"missing", testMissing},
	{"delete", testDelete},
	{"short_reader", testShortReader},
	{"long_reader", testLongReader},
	{"failing_reader", testFailingReader},
	{"canceled_context", testCanceledContext},
	{"canceled_during_put", testCanceledDuringPut},
	{"concurrent_puts", testConcurrentPuts},
	{"readers_see_whole_blobs", testReadersSeeWholeBlobs},
	{"slash_keys", testSlashKeys},
	{"invalid_keys", testInvalidKeys},
	{"mod_time", testModTime},
	{"close_idempotent", testCloseIdempotent},
}

// Run runs the conformance suite. newStore must return a fresh, empty
// store for each call (a t.TempDir(), a unique key prefix); subtests run
// in parallel, each with its own store. Run closes each store when its
// subtest ends (Close must be idempotent); cleanups newStore registers
// with t.Cleanup run after that.
func Run(t *testing.T, newStore func(t *testing.T) storage.BlobStore) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t)
			t.Cleanup(func() { _ = s.Close() })
			tc.fn(t, s)
		})
	}
}

// blob is deterministic pseudo-random content of a given size. Its bytes
// are generated on demand, so large blobs never sit in memory.
type blob struct {
	seed uint64
	size int64
}

var seeds struct {
	mu   sync.Mutex
	next uint64
}

// newBlob returns content unlike any other newBlob's.
func newBlob(size int64) blob {
	seeds.mu.Lock()
	defer seeds.mu.Unlock()
	seeds.next++
	return blob{seed: seeds.next, size: size}
}

// reader yields the blob's bytes.
func (b blob) reader() io.Reader { return b.readerN(b.size) }

// readerN yields the first n bytes of the blob's stream, which goes on
// past size (for readers holding too much).
func (b blob) readerN(n int64) io.Reader {
	var seed [32]byte
	binary.LittleEndian.PutUint64(seed[:], b.seed)
	return io.LimitReader(rand.NewChaCha8(seed), n)
}

// key names the blob: 64 hex digits, like the media service's digests,
// but unique per blob even when contents are equal (all empty blobs).
func (b blob) key() string {
	var seed [8]byte
	binary.LittleEndian.PutUint64(seed[:], b.seed)
	sum := sha256.Sum256(seed[:])
	return hex.EncodeToString(sum[:])
}

// digestFrom is the hex SHA-256 of the blob's bytes from offset on.
func (b blob) digestFrom(offset int64) string {
	h := sha256.New()
	r := b.reader()
	_, _ = io.CopyN(io.Discard, r, offset)
	_, _ = io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil))
}

// put stores b under key and fails the test on error.
func put(t *testing.T, s storage.BlobStore, key string, b blob) {
	t.Helper()
	require.NoError(t, s.Put(t.Context(), key, b.reader(), b.size, "application/octet-stream"))
}

// requireBlob requires key to hold exactly b: Stat's and Open's sizes and
// the bytes from offset on.
func requireBlob(t *testing.T, s storage.BlobStore, key string, b blob, offset int64) {
	t.Helper()
	info, err := s.Stat(t.Context(), key)
	require.NoError(t, err)
	require.Equal(t, b.size, info.Size)

	rc, info, err := s.Open(t.Context(), key, offset)
	require.NoError(t, err)
	defer rc.Close()
	require.Equal(t, b.size, info.Size)
	h := sha256.New()
	n, err := io.Copy(h, rc)
	require.NoError(t, err)
	require.Equal(t, b.size-offset, n, "bytes read from offset %d", offset)
	require.Equal(t, b.digestFrom(offset), hex.EncodeToString(h.Sum(nil)), "content from offset %d", offset)
	require.NoError(t, rc.Close())
}

// requireMissing requires that key holds no blob.
func requireMissing(t *testing.T, s storage.BlobStore, key string) {
	t.Helper()
	_, err := s.Stat(t.Context(), key)
	require.ErrorIs(t, err, storage.ErrNotFound)
	rc, _, err := s.Open(t.Context(), key, 0)
	if err == nil {
		rc.Close()
	}
	require.ErrorIs(t, err, storage.ErrNotFound)
}

func testRoundTrip(t *testing.T, s storage.BlobStore) {
	for _, size := range []int64{0, 1, 1000, 1 << 20, MultipartSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			b := newBlob(size)
			put(t, s, b.key(), b)
			requireBlob(t, s, b.key(), b, 0)
		})
	}
}

func testOverwrite(t *testing.T, s storage.BlobStore) {
	const key = "overwritten"
	first, second, third := newBlob(3000), newBlob(10), newBlob(0)
	put(t, s, key, first)
	put(t, s, key, second)
	requireBlob(t, s, key, second, 0)
	put(t, s, key, third)
	requireBlob(t, s, key, third, 0)
}

func testOpenOffsets(t *testing.T, s storage.BlobStore) {
	for _, size := range []int64{1000, MultipartSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			b := newBlob(size)
			put(t, s, b.key(), b)
			for _, offset := range []int64{0, 1, size / 2, size - 1, size} {
				requireBlob(t, s, b.key(), b, offset)
			}
			for _, offset := range []int64{-1, size + 1} {
				rc, _, err := s.Open(t.Context(), b.key(), offset)
				if err == nil {
					rc.Close()
				}
				require.Error(t, err, "offset %d", offset)
				require.NotErrorIs(t, err, storage.ErrNotFound, "offset %d", offset)
			}
		})
	}
	t.Run("empty_blob", func(t *testing.T) {
		b := newBlob(0)
		put(t, s, b.key(), b)
		requireBlob(t, s, b.key(), b, 0)
	})
}

func testMissing(t *testing.T, s storage.BlobStore) {
	requireMissing(t, s, newBlob(1).key())
	requireMissing(t, s, "thumb/"+newBlob(1).key())
}

func testDelete(t *testing.T, s storage.BlobStore) {
	b, other := newBlob(100), newBlob(100)
	put(t, s, b.key(), b)
	put(t, s, other.key(), other)

	require.NoError(t, s.Delete(t.Context(), b.key()))
	requireMissing(t, s, b.key())
	require.NoError(t, s.Delete(t.Context(), b.key()), "deleting a deleted blob")
	require.NoError(t, s.Delete(t.Context(), newBlob(1).key()), "deleting a blob never stored")
	requireBlob(t, s, other.key(), other, 0)

	// A deleted key can be written again.
	put(t, s, b.key(), b)
	requireBlob(t, s, b.key(), b, 0)
}

// testFailedPut runs a Put that must fail, for a fresh key and for a key
// holding a blob already, and requires that it changed nothing.
func testFailedPut(t *testing.T, s storage.BlobStore, size int64, r func(b blob) io.Reader) {
	t.Helper()
	b := newBlob(size)
	err := s.Put(t.Context(), b.key(), r(b), b.size, "")
	require.Error(t, err)
	requireMissing(t, s, b.key())

	old := newBlob(10)
	put(t, s, b.key(), old)
	require.Error(t, s.Put(t.Context(), b.key(), r(b), b.size, ""))
	requireBlob(t, s, b.key(), old, 0)
}

func testShortReader(t *testing.T, s storage.BlobStore) {
	for _, size := range []int64{1, 1000, MultipartSize} {
		for _, missing := range []int64{1, size} {
			t.Run(fmt.Sprintf("%d_of_%d", size-missing, size), func(t *testing.T) {
				testFailedPut(t, s, size, func(b blob) io.Reader { return b.readerN(b.size - missing) })
			})
		}
	}
	// A reader that ends exactly at a part boundary of a multipart
	// upload.
	t.Run("ends_at_part_boundary", func(t *testing.T) {
		testFailedPut(t, s, MultipartSize+5<<20, func(b blob) io.Reader { return b.readerN(5 << 20) })
	})
}

func testLongReader(t *testing.T, s storage.BlobStore) {
	for _, size := range []int64{0, 1, 1000, MultipartSize} {
		for _, extra := range []int64{1, 1000} {
			t.Run(fmt.Sprintf("%d_of_%d", size+extra, size), func(t *testing.T) {
				testFailedPut(t, s, size, func(b blob) io.Reader { return b.readerN(b.size + extra) })
			})
		}
	}
}

// errFailing is what failingReader returns.
var errFailing = errors.New("reader failed")

// failingReader yields r's bytes, then errFailing instead of io.EOF.
type failingReader struct{ r io.Reader }

func (f failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if errors.Is(err, io.EOF) {
		return n, errFailing
	}
	return n, err
}

func testFailingReader(t *testing.T, s storage.BlobStore) {
	for _, size := range []int64{1000, MultipartSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			// The reader fails after half, and also right at the end, where
			// a store that stops counting at size would not notice.
			for _, n := range []int64{size / 2, size} {
				testFailedPut(t, s, size, func(b blob) io.Reader { return failingReader{b.readerN(n)} })
			}
		})
	}
}

func testCanceledContext(t *testing.T, s storage.BlobStore) {
	b := newBlob(100)
	put(t, s, b.key(), b)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	fresh := newBlob(100)
	require.ErrorIs(t, s.Put(ctx, fresh.key(), fresh.reader(), fresh.size, ""), context.Canceled, "put")
	require.ErrorIs(t, s.Put(ctx, b.key(), fresh.reader(), fresh.size, ""), context.Canceled, "put over a blob")
	_, err := s.Stat(ctx, b.key())
	require.ErrorIs(t, err, context.Canceled, "stat")
	rc, _, err := s.Open(ctx, b.key(), 0)
	if err == nil {
		rc.Close()
	}
	require.ErrorIs(t, err, context.Canceled, "open")
	require.ErrorIs(t, s.Delete(ctx, b.key()), context.Canceled, "delete")

	requireMissing(t, s, fresh.key())
	requireBlob(t, s, b.key(), b, 0)
}

// cancelingReader yields r's bytes and calls cancel once it has yielded
// after bytes, then goes on yielding.
type cancelingReader struct {
	r      io.Reader
	after  int64
	cancel context.CancelFunc
	read   int64
}

func (c *cancelingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += int64(n)
	if c.read >= c.after {
		c.cancel()
	}
	return n, err
}

func testCanceledDuringPut(t *testing.T, s storage.BlobStore) {
	for _, size := range []int64{100_000, MultipartSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			b := newBlob(size)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			r := &cancelingReader{r: b.reader(), after: size / 2, cancel: cancel}
			require.ErrorIs(t, s.Put(ctx, b.key(), r, b.size, ""), context.Canceled)
			requireMissing(t, s, b.key())
		})
	}
}

func testConcurrentPuts(t *testing.T, s storage.BlobStore) {
	const writers = 4
	b := newBlob(300_000)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() { errs <- s.Put(t.Context(), b.key(), b.reader(), b.size, "") })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	requireBlob(t, s, b.key(), b, 0)
}

// testReadersSeeWholeBlobs overwrites a key while others read it: every
// Open sees one whole blob, never a mix or a partial one.
func testReadersSeeWholeBlobs(t *testing.T, s storage.BlobStore) {
	const (
		key    = "contended"
		rounds = 10
	)
	versions := []blob{newBlob(200_000), newBlob(150_000)}
	digests := map[string]int64{versions[0].digestFrom(0): versions[0].size, versions[1].digestFrom(0): versions[1].size}
	put(t, s, key, versions[0])

	ctx, stop := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	seen := make(chan error, 1)
	wg.Go(func() {
		defer close(seen)
		for ctx.Err() == nil {
			rc, info, err := s.Open(ctx, key, 0)
			if ctx.Err() != nil {
				if err == nil {
					rc.Close()
				}
				return
			}
			if err != nil {
				seen <- err
				return
			}
			h := sha256.New()
			n, err := io.Copy(h, rc)
			rc.Close()
			if err != nil && ctx.Err() != nil {
				return
			}
			size, ok := digests[hex.EncodeToString(h.Sum(nil))]
			if err != nil || !ok || n != size || info.Size != size {
				seen <- fmt.Errorf("read %d bytes (Open said %d) of no version written, err %w", n, info.Size, err)
				return
			}
		}
	})
	for i := range rounds {
		b := versions[(i+1)%len(versions)]
		if err := s.Put(t.Context(), key, b.reader(), b.size, ""); err != nil {
			stop()
			wg.Wait()
			require.NoError(t, err)
		}
	}
	stop()
	wg.Wait()
	require.NoError(t, <-seen)
}

func testSlashKeys(t *testing.T, s storage.BlobStore) {
	digest := newBlob(1).key()
	keys := []string{
		"thumb/" + digest,
		"a",
		"a/b",
		"a/b/c",
		"b/a",
		"a%2Fb", // not "a/b": keys are not decoded
		"a%b",
		".hidden",
		"...",
		"ünïcode/名前",
		"with space",
	}
	blobs := make([]blob, len(keys))
	for i, key := range keys {
		blobs[i] = newBlob(int64(10 + i))
		put(t, s, key, blobs[i])
	}
	for i, key := range keys {
		requireBlob(t, s, key, blobs[i], 0)
	}
	require.NoError(t, s.Delete(t.Context(), "a"))
	requireMissing(t, s, "a")
	requireBlob(t, s, "a/b", blobs[2], 0)
	requireMissing(t, s, "thumb")
}

// InvalidKeys are refused by every backend.
var InvalidKeys = []string{
	"",
	"/",
	"/abs",
	"a/",
	"a//b",
	".",
	"..",
	"./a",
	"a/.",
	"../a",
	"a/../b",
	"a/..",
	`a\b`,
	`..\a`,
	"a\x00b",
	"a\nb",
	"a\x7fb",
	"\xff\xfe",
}

func testInvalidKeys(t *testing.T, s storage.BlobStore) {
	for _, key := range InvalidKeys {
		t.Run(fmt.Sprintf("%q", key), func(t *testing.T) {
			b := newBlob(10)
			err := s.Put(t.Context(), key, b.reader(), b.size, "")
			require.Error(t, err, "put")

			_, err = s.Stat(t.Context(), key)
			require.Error(t, err, "stat")
			require.NotErrorIs(t, err, storage.ErrNotFound, "stat")

			rc, _, err := s.Open(t.Context(), key, 0)
			if err == nil {
				rc.Close()
			}
			require.Error(t, err, "open")
			require.NotErrorIs(t, err, storage.ErrNotFound, "open")

			require.Error(t, s.Delete(t.Context(), key), "delete")
		})
	}
	t.Run("too_long", func(t *testing.T) {
		key := string(bytes.Repeat([]byte("k"), 1025))
		b := newBlob(10)
		require.Error(t, s.Put(t.Context(), key, b.reader(), b.size, ""))
	})
	t.Run("negative_size", func(t *testing.T) {
		b := newBlob(10)
		require.Error(t, s.Put(t.Context(), b.key(), b.reader(), -1, ""))
		requireMissing(t, s, b.key())
	})
}

func testModTime(t *testing.T, s storage.BlobStore) {
	b := newBlob(10)
	before := time.Now()
	put(t, s, b.key(), b)
	after := time.Now()

	info, err := s.Stat(t.Context(), b.key())
	require.NoError(t, err)
	require.WithinRange(t, info.ModTime, before.Add(-clockSkew), after.Add(clockSkew))
	rc, openInfo, err := s.Open(t.Context(), b.key(), 0)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	require.True(t, info.ModTime.Equal(openInfo.ModTime), "Stat %v, Open %v", info.ModTime, openInfo.ModTime)
}

func testCloseIdempotent(t *testing.T, s storage.BlobStore) {
	b := newBlob(10)
	put(t, s, b.key(), b)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
}
