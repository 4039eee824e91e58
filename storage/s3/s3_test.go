package s3_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/s3"
	"github.com/parley-im/parley/storage/storagetest/blobtest"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// server is the SeaweedFS all tests in this package share.
var server *realsvc.S3

func TestMain(m *testing.M) {
	var err error
	server, err = realsvc.StartS3()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	if err := server.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	os.Exit(code)
}

var prefixes atomic.Int64

// testConfig is a Config for the shared server with a prefix no other test
// uses and the smallest parts, so blobtest.MultipartSize takes two.
func testConfig() s3.Config {
	return s3.Config{
		Endpoint:        server.Endpoint(),
		Bucket:          realsvc.S3Bucket,
		AccessKeyID:     realsvc.S3AccessKeyID,
		SecretAccessKey: realsvc.S3SecretAccessKey,
		Prefix:          "t" + strconv.FormatInt(prefixes.Add(1), 10) + "/",
		PartSize:        s3.MinPartSize,
	}
}

func newStore(t testing.TB, cfg s3.Config) *s3.Store {
	t.Helper()
	s, err := s3.New(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	t.Parallel()
	blobtest.Run(t, func(t *testing.T) storage.BlobStore { return newStore(t, testConfig()) })
}

// client is a plain minio client on the shared server, to look behind the
// store's back.
func client(t *testing.T) *minio.Client {
	t.Helper()
	c, err := minio.New(server.Endpoint(), &minio.Options{
		Creds: credentials.NewStaticV4(realsvc.S3AccessKeyID, realsvc.S3SecretAccessKey, ""),
	})
	require.NoError(t, err)
	return c
}

// incompleteUploads lists the multipart uploads in progress under prefix.
func incompleteUploads(t *testing.T, prefix string) []string {
	t.Helper()
	var keys []string
	for u := range client(t).ListIncompleteUploads(t.Context(), realsvc.S3Bucket, prefix, true) {
		require.NoError(t, u.Err)
		keys = append(keys, u.Key)
	}
	return keys
}

func TestObjectLayout(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	s := newStore(t, cfg)
	require.NoError(t, s.Put(t.Context(), "thumb/abc", strings.NewReader("png"), 3, "image/png"))
	oi, err := client(t).StatObject(t.Context(), realsvc.S3Bucket, cfg.Prefix+"thumb/abc", minio.StatObjectOptions{})
	require.NoError(t, err)
	require.Equal(t, int64(3), oi.Size)
	require.Equal(t, "image/png", oi.ContentType)
}

// A failed multipart upload is aborted, also when the Put's ctx ended.
func TestFailedMultipartAborted(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	s := newStore(t, cfg)
	const size = 3*s3.MinPartSize + 1
	cases := []struct {
		name string
		r    func(cancel context.CancelFunc) io.Reader
	}{
		{"short", func(context.CancelFunc) io.Reader { return io.LimitReader(zeros{}, 2*s3.MinPartSize+10) }},
		{"long", func(context.CancelFunc) io.Reader { return io.LimitReader(zeros{}, size+1) }},
		{"canceled", func(cancel context.CancelFunc) io.Reader {
			return io.MultiReader(io.LimitReader(zeros{}, 2*s3.MinPartSize), cancelOnRead{cancel}, zeros{})
		}},
	}
	for _, tc := range cases {
		ctx, cancel := context.WithCancel(t.Context())
		err := s.Put(ctx, tc.name, tc.r(cancel), size, "")
		cancel()
		require.Error(t, err, tc.name)
	}
	require.Empty(t, incompleteUploads(t, cfg.Prefix))
	objects := client(t).ListObjects(t.Context(), realsvc.S3Bucket, minio.ListObjectsOptions{Prefix: cfg.Prefix, Recursive: true})
	for o := range objects {
		require.NoError(t, o.Err)
		t.Errorf("object %s left behind", o.Key)
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	s := newStore(t, testConfig())
	ctx := t.Context()
	require.NoError(t, s.Put(ctx, "k", strings.NewReader("x"), 1, ""))
	rc, _, err := s.Open(ctx, "k", 0)
	require.NoError(t, err)
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())

	require.ErrorIs(t, s.Put(ctx, "k2", strings.NewReader("x"), 1, ""), storage.ErrUnavailable)
	_, _, err = s.Open(ctx, "k", 0)
	require.ErrorIs(t, err, storage.ErrUnavailable)
	_, err = s.Stat(ctx, "k")
	require.ErrorIs(t, err, storage.ErrUnavailable)
	require.ErrorIs(t, s.Delete(ctx, "k"), storage.ErrUnavailable)

	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Equal(t, "x", string(b))
	require.NoError(t, rc.Close())
}

func TestNew(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Bucket = "parley-missing-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	_, err := s3.New(t.Context(), cfg)
	require.ErrorContains(t, err, "does not exist")

	cfg.CreateBucket = true
	s := newStore(t, cfg)
	require.NoError(t, s.Put(t.Context(), "k", strings.NewReader("x"), 1, ""))
	newStore(t, cfg) // exists now

	bad := testConfig()
	bad.SecretAccessKey = "wrong"
	_, err = s3.New(t.Context(), bad)
	require.Error(t, err)
	require.NotErrorIs(t, err, storage.ErrUnavailable, "bad credentials are not an outage")

	for _, c := range []s3.Config{
		{Bucket: "b"},
		{Endpoint: "127.0.0.1:1"},
		{Endpoint: "127.0.0.1:1", Bucket: "b", PartSize: s3.MinPartSize - 1},
		{Endpoint: "127.0.0.1:1", Bucket: "b", Prefix: "../"},
	} {
		_, err := s3.New(t.Context(), c)
		require.Error(t, err, "%+v", c)
	}
}

// TestUnreachable: a server that is not there is ErrUnavailable.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Endpoint = "127.0.0.1:1" // nothing listens on port 1
	cfg.MaxRetries = 1
	_, err := s3.New(t.Context(), cfg)
	require.ErrorIs(t, err, storage.ErrUnavailable)
}

// TestServerGone: calls on a store whose server stopped are ErrUnavailable.
func TestServerGone(t *testing.T) {
	t.Parallel()
	srv := realsvc.StartS3TB(t)
	cfg := testConfig()
	cfg.Endpoint = srv.Endpoint()
	cfg.MaxRetries = 1
	s := newStore(t, cfg)
	require.NoError(t, s.Put(t.Context(), "k", strings.NewReader("x"), 1, ""))
	require.NoError(t, srv.Stop())

	require.ErrorIs(t, s.Put(t.Context(), "k", strings.NewReader("y"), 1, ""), storage.ErrUnavailable)
	_, _, err := s.Open(t.Context(), "k", 0)
	require.ErrorIs(t, err, storage.ErrUnavailable)
	_, err = s.Stat(t.Context(), "k")
	require.ErrorIs(t, err, storage.ErrUnavailable)
	require.ErrorIs(t, s.Delete(t.Context(), "k"), storage.ErrUnavailable)
}

// TestLargeBlobMemory streams 100 MiB in and out with the default 16 MiB
// parts: the live heap holds one part, and with the garbage GOGC lets
// pile up before a collection (the request signer's per-chunk hashes, about
// a tenth of the bytes sent) the heap stays under two parts and change.
// Not parallel: other tests' allocations would blur the numbers.
func TestLargeBlobMemory(t *testing.T) {
	cfg := testConfig()
	cfg.PartSize = 0 // s3.DefaultPartSize
	s := newStore(t, cfg)
	const size = 100 << 20
	res := blobtest.MeasureLarge(t, s, size)
	t.Logf("100 MiB: Put peak heap %d KiB, allocated %d KiB; Open+read peak heap %d KiB, allocated %d KiB",
		res.Put.PeakHeap>>10, res.Put.TotalAlloc>>10, res.Open.PeakHeap>>10, res.Open.TotalAlloc>>10)
	const limit = 2*s3.DefaultPartSize + 8<<20
	require.Less(t, res.Put.PeakHeap, uint64(limit))
	require.Less(t, res.Open.PeakHeap, uint64(8<<20))
	require.Less(t, res.Open.TotalAlloc, uint64(16<<20))
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// cancelOnRead cancels a ctx when first read, and yields nothing.
type cancelOnRead struct{ cancel context.CancelFunc }

func (c cancelOnRead) Read([]byte) (int, error) {
	c.cancel()
	return 0, io.EOF
}
