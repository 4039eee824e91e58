package realsvc_test

import (
	"bytes"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// TestS3 starts SeaweedFS, round-trips an object through its S3 gateway,
// and stops it (twice: Stop is idempotent).
func TestS3(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s, err := realsvc.StartS3()
	require.NoError(t, err)
	t.Logf("s3 ready on %s in %v", s.Endpoint(), time.Since(start))

	c, err := minio.New(s.Endpoint(), &minio.Options{
		Creds: credentials.NewStaticV4(realsvc.S3AccessKeyID, realsvc.S3SecretAccessKey, ""),
	})
	require.NoError(t, err)
	body := []byte("hello")
	_, err = c.PutObject(t.Context(), realsvc.S3Bucket, "a/b", bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{})
	require.NoError(t, err)
	obj, err := c.GetObject(t.Context(), realsvc.S3Bucket, "a/b", minio.GetObjectOptions{})
	require.NoError(t, err)
	got, err := io.ReadAll(obj)
	require.NoError(t, err)
	require.Equal(t, body, got)

	anon, err := minio.New(s.Endpoint(), &minio.Options{})
	require.NoError(t, err)
	_, err = anon.StatObject(t.Context(), realsvc.S3Bucket, "a/b", minio.StatObjectOptions{})
	require.Error(t, err, "anonymous requests are refused")

	start = time.Now()
	require.NoError(t, s.Stop())
	require.NoError(t, s.Stop())
	t.Logf("s3 stopped in %v", time.Since(start))
}

// TestS3MissingBinary: without weed the error says how to install it.
func TestS3MissingBinary(t *testing.T) {
	t.Setenv("PARLEY_WEED", filepath.Join(t.TempDir(), "no-weed"))
	_, err := realsvc.StartS3()
	require.ErrorContains(t, err, "no-weed")
	t.Setenv("PARLEY_WEED", "")
	t.Setenv("PATH", t.TempDir())
	t.Chdir(t.TempDir())
	_, err = realsvc.StartS3()
	require.ErrorContains(t, err, realsvc.S3Install)
}
