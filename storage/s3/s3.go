// Package s3 implements storage.BlobStore on S3-compatible object storage
// (AWS S3, SeaweedFS, Ceph RGW, Garage, ...) through minio-go, for
// clusters whose parleyd processes share their media.
//
// A blob is the object Config.Prefix+key in Config.Bucket. Put uploads it
// in parts of Config.PartSize bytes, each read whole into memory before it
// is sent: a Put holds at most one part (and blobs up to PartSize in one
// PUT request), so memory grows with the number of concurrent Puts, not
// with blob sizes. Because every byte is read before the request that
// would complete the object goes out, a reader that ends early, holds too
// much or fails never leaves an object behind; a multipart upload that
// fails is aborted. Object storage is atomic per object: readers see the
// old blob or the new one, never a mix.
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/parley-im/parley/storage"
)

// Defaults and limits.
const (
	// DefaultPartSize is the size of an upload's parts when
	// Config.PartSize is 0.
	DefaultPartSize = 16 << 20
	// MinPartSize is S3's smallest part (all but the last).
	MinPartSize = 5 << 20
	// MaxKeyLen bounds Prefix+key in bytes, as S3 does.
	MaxKeyLen = 1024

	// maxParts is S3's limit on the parts of one upload. Blobs larger than
	// maxParts*PartSize get larger parts.
	maxParts = 10_000
	// smallBlob is the size up to which Put allocates a buffer of the
	// blob's own size instead of taking a PartSize one from the pool.
	smallBlob = 1 << 20
	// abortTimeout bounds the cleanup of a failed multipart upload, which
	// runs even when the Put's ctx has ended.
	abortTimeout = 10 * time.Second
)

// ErrInvalidKey is returned (wrapped) for a key the store refuses: the
// same rules as storage/blobfs (empty, longer than MaxKeyLen with the
// prefix, not UTF-8, a control character or backslash, an empty, "." or
// ".." segment, or a leading or trailing '/'), so keys work on either
// backend.
var ErrInvalidKey = errors.New("invalid blob key")

// Config configures a Store.
type Config struct {
	// Endpoint is the server's host[:port], without a scheme
	// ("s3.eu-west-1.amazonaws.com", "127.0.0.1:8333"). Required.
	Endpoint string `yaml:"endpoint" env:"ENDPOINT"`
	// UseTLS selects https.
	UseTLS bool `yaml:"use_tls" env:"USE_TLS"`
	// Region is the bucket's region; empty asks the server (one extra
	// request per bucket, cached).
	Region string `yaml:"region" env:"REGION"`
	// Bucket holds the blobs. Required. It must exist unless CreateBucket
	// is set.
	Bucket string `yaml:"bucket" env:"BUCKET"`
	// CreateBucket makes New create Bucket when it is missing.
	CreateBucket bool `yaml:"create_bucket" env:"CREATE_BUCKET"`
	// AccessKeyID and SecretAccessKey are the static credentials to sign
	// requests with; both empty means anonymous requests.
	AccessKeyID     string `yaml:"access_key_id" env:"ACCESS_KEY_ID"`
	SecretAccessKey string `yaml:"secret_access_key" env:"SECRET_ACCESS_KEY"`
	// Prefix starts every object name, so several clusters (or tests) can
	// share a bucket. Usually ends in '/'; may be empty.
	Prefix string `yaml:"prefix" env:"PREFIX"`
	// PartSize is the size of an upload's parts, at least MinPartSize; 0
	// means DefaultPartSize. Each Put in progress holds one part in
	// memory.
	PartSize int64 `yaml:"part_size" env:"PART_SIZE"`
	// MaxRetries bounds minio-go's retries of a failed request (with
	// backoff); 0 means minio-go's default (10). Deadlines come from the
	// callers' contexts.
	MaxRetries int `yaml:"max_retries" env:"MAX_RETRIES"`
}

// Store is a storage.BlobStore on an S3 bucket. It is safe for concurrent
// use.
type Store struct {
	core      minio.Core
	transport *http.Transport
	bucket    string
	prefix    string
	partSize  int64
	parts     sync.Pool // *[]byte of partSize
	closed    atomic.Bool
}

var _ storage.BlobStore = (*Store)(nil)

// New connects to the server and checks that the bucket exists, creating
// it when cfg.CreateBucket is set. ErrUnavailable when the server cannot
// be reached.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return nil, errors.New("s3: Config.Endpoint and Config.Bucket are required")
	}
	if cfg.PartSize == 0 {
		cfg.PartSize = DefaultPartSize
	}
	if cfg.PartSize < MinPartSize {
		return nil, fmt.Errorf("s3: Config.PartSize %d is below the minimum %d", cfg.PartSize, MinPartSize)
	}
	if cfg.Prefix != "" {
		if err := validateKey(strings.TrimSuffix(cfg.Prefix, "/")); err != nil {
			return nil, fmt.Errorf("s3: Config.Prefix: %w", err)
		}
	}
	transport, err := minio.DefaultTransport(cfg.UseTLS)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKeyID, cfg.SecretAccessKey, ""),
		Secure:     cfg.UseTLS,
		Region:     cfg.Region,
		Transport:  transport,
		MaxRetries: cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	s := &Store{
		core:      minio.Core{Client: client},
		transport: transport,
		bucket:    cfg.Bucket,
		prefix:    cfg.Prefix,
		partSize:  cfg.PartSize,
	}
	s.parts.New = func() any {
		b := make([]byte, s.partSize)
		return &b
	}
	if err := s.ensureBucket(ctx, cfg); err != nil {
		transport.CloseIdleConnections()
		return nil, err
	}
	return s, nil
}

// ensureBucket checks that the bucket exists, creating it when allowed.
func (s *Store) ensureBucket(ctx context.Context, cfg Config) error {
	ok, err := s.core.BucketExists(ctx, s.bucket)
	if err != nil {
		return wrapErr(ctx, "bucket "+s.bucket, err)
	}
	if ok {
		return nil
	}
	if !cfg.CreateBucket {
		return fmt.Errorf("s3: bucket %q does not exist (set create_bucket to create it)", s.bucket)
	}
	err = s.core.MakeBucket(ctx, s.bucket, minio.MakeBucketOptions{Region: cfg.Region})
	if code := minio.ToErrorResponse(err).Code; code == minio.BucketAlreadyOwnedByYou {
		return nil // created meanwhile by another process
	}
	return wrapErr(ctx, "create bucket "+s.bucket, err)
}

// Put stores exactly size bytes read from r under key, replacing any
// object there; see storage.BlobStore. size may be 0. contentType becomes
// the object's Content-Type. Blobs up to PartSize go up in one PUT,
// larger ones as a multipart upload that is aborted when the Put fails
// (even when ctx has ended: the abort gets its own short deadline). Put
// reads r only in the calling goroutine, so not after it returns.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.validate(key); err != nil {
		return fmt.Errorf("s3: put: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("s3: put %s: negative size %d", key, size)
	}
	er := &exactReader{ctx: ctx, r: r, remaining: size, size: size}
	opts := minio.PutObjectOptions{ContentType: contentType}
	var err error
	if size <= s.partSize {
		err = s.putSingle(ctx, key, er, size, opts)
	} else {
		err = s.putMultipart(ctx, key, er, size, opts)
	}
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rerr := er.failure(); rerr != nil {
			return fmt.Errorf("s3: put %s: %w", key, rerr)
		}
		return wrapErr(ctx, "put "+key, err)
	}
	return nil
}

// putSingle reads the whole blob (size ≤ PartSize), then sends it in one
// PUT request. The buffer makes the request retriable.
func (s *Store) putSingle(ctx context.Context, key string, er *exactReader, size int64, opts minio.PutObjectOptions) error {
	buf, release := s.buffer(size)
	defer release()
	if _, err := io.ReadFull(er, buf); err != nil {
		return err
	}
	if err := er.checkEnd(); err != nil {
		return err
	}
	_, err := s.core.PutObject(ctx, s.bucket, s.prefix+key, bytes.NewReader(buf), size, "", "", opts)
	return err
}

// putMultipart uploads the blob part by part, reading each whole before
// sending it, and completes the upload only once r has ended exactly at
// size. On failure it aborts the upload.
func (s *Store) putMultipart(ctx context.Context, key string, er *exactReader, size int64, opts minio.PutObjectOptions) (err error) {
	partSize := s.partSize
	if minimum := (size + maxParts - 1) / maxParts; minimum > partSize {
		partSize = minimum
	}
	name := s.prefix + key
	uploadID, err := s.core.NewMultipartUpload(ctx, s.bucket, name, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// The upload's parts are invisible but take space until aborted:
			// abort even when ctx has ended, within a bound of our own.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abortTimeout)
			defer cancel()
			_ = s.core.AbortMultipartUpload(actx, s.bucket, name, uploadID)
		}
	}()

	buf, release := s.buffer(partSize)
	defer release()
	var parts []minio.CompletePart
	for n := 1; er.left() > 0; n++ {
		part := buf[:min(partSize, er.left())]
		if _, err := io.ReadFull(er, part); err != nil {
			return err
		}
		if er.left() == 0 {
			if err := er.checkEnd(); err != nil {
				return err
			}
		}
		p, err := s.core.PutObjectPart(ctx, s.bucket, name, uploadID, n, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{})
		if err != nil {
			return err
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
	}
	_, err = s.core.CompleteMultipartUpload(ctx, s.bucket, name, uploadID, parts, opts)
	return err
}

// buffer returns a buffer of n ≤ partSize bytes and the func that gives
// it back: small blobs get their own, parts come from a pool.
func (s *Store) buffer(n int64) ([]byte, func()) {
	if n <= smallBlob || n > s.partSize {
		return make([]byte, n), func() {}
	}
	bp, _ := s.parts.Get().(*[]byte)
	return (*bp)[:n], func() { s.parts.Put(bp) }
}

// Open returns the blob's bytes from offset on; see storage.BlobStore.
// It makes one GET request (a ranged one for offset > 0), so a missing key
// is reported here, not on the first Read. ctx governs the reads too:
// when it ends, Read fails. Read errors other than io.EOF wrap
// storage.ErrUnavailable.
func (s *Store) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, storage.BlobInfo, error) {
	if err := s.check(ctx); err != nil {
		return nil, storage.BlobInfo{}, err
	}
	if err := s.validate(key); err != nil {
		return nil, storage.BlobInfo{}, fmt.Errorf("s3: open: %w", err)
	}
	if offset < 0 {
		return nil, storage.BlobInfo{}, fmt.Errorf("s3: open %s: negative offset %d", key, offset)
	}
	var opts minio.GetObjectOptions
	if offset > 0 {
		if err := opts.SetRange(offset, 0); err != nil {
			return nil, storage.BlobInfo{}, fmt.Errorf("s3: open %s: %w", key, err)
		}
	}
	body, oi, h, err := s.core.GetObject(ctx, s.bucket, s.prefix+key, opts)
	if err != nil {
		if offset > 0 && minio.ToErrorResponse(err).Code == minio.InvalidRange {
			return s.openAtEnd(ctx, key, offset)
		}
		return nil, storage.BlobInfo{}, wrapErr(ctx, "open "+key, err)
	}
	info := storage.BlobInfo{Size: oi.Size, ModTime: oi.LastModified.UTC()}
	if offset > 0 {
		total, ranged := totalSize(h.Get("Content-Range"))
		if ranged {
			info.Size = total
		} else if _, err := io.CopyN(io.Discard, body, offset); err != nil {
			// The server ignored the range and sent the whole blob.
			body.Close()
			return nil, storage.BlobInfo{}, wrapErr(ctx, "open "+key, err)
		}
	}
	return &bodyReader{ctx: ctx, key: key, rc: body}, info, nil
}

// openAtEnd answers an Open whose range the server refused: an offset
// equal to the blob's size reads nothing; a larger one is an error.
func (s *Store) openAtEnd(ctx context.Context, key string, offset int64) (io.ReadCloser, storage.BlobInfo, error) {
	info, err := s.Stat(ctx, key)
	if err != nil {
		return nil, storage.BlobInfo{}, err
	}
	if offset != info.Size {
		return nil, storage.BlobInfo{}, fmt.Errorf("s3: open %s: offset %d outside 0..%d", key, offset, info.Size)
	}
	return io.NopCloser(strings.NewReader("")), info, nil
}

// Stat describes the blob under key (a HEAD request), or returns
// storage.ErrNotFound.
func (s *Store) Stat(ctx context.Context, key string) (storage.BlobInfo, error) {
	if err := s.check(ctx); err != nil {
		return storage.BlobInfo{}, err
	}
	if err := s.validate(key); err != nil {
		return storage.BlobInfo{}, fmt.Errorf("s3: stat: %w", err)
	}
	oi, err := s.core.StatObject(ctx, s.bucket, s.prefix+key, minio.StatObjectOptions{})
	if err != nil {
		return storage.BlobInfo{}, wrapErr(ctx, "stat "+key, err)
	}
	return storage.BlobInfo{Size: oi.Size, ModTime: oi.LastModified.UTC()}, nil
}

// Delete removes the blob under key; a missing blob is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := s.validate(key); err != nil {
		return fmt.Errorf("s3: delete: %w", err)
	}
	err := s.core.RemoveObject(ctx, s.bucket, s.prefix+key, minio.RemoveObjectOptions{})
	if err != nil && minio.ToErrorResponse(err).Code == minio.NoSuchKey {
		return nil // S3 itself answers 204; some servers say 404
	}
	return wrapErr(ctx, "delete "+key, err)
}

// Close marks the store closed (later calls return storage.ErrUnavailable)
// and closes idle connections. Readers Open returned stay usable until
// their own Close. Close is idempotent.
func (s *Store) Close() error {
	if s.closed.CompareAndSwap(false, true) {
		s.transport.CloseIdleConnections()
	}
	return nil
}

// check returns ctx's error as it is, or ErrUnavailable after Close.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return fmt.Errorf("s3: closed: %w", storage.ErrUnavailable)
	}
	return nil
}

// validate applies validateKey and the length limit with the prefix.
func (s *Store) validate(key string) error {
	if err := validateKey(key); err != nil {
		return err
	}
	if n := len(s.prefix) + len(key); n > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes with the prefix, more than %d", ErrInvalidKey, n, MaxKeyLen)
	}
	return nil
}

// validateKey enforces the key rules ErrInvalidKey lists (those of
// storage/blobfs).
func validateKey(key string) error {
	switch {
	case key == "":
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("%w %q: not UTF-8", ErrInvalidKey, key)
	}
	for _, c := range key {
		if c == '\\' || unicode.IsControl(c) {
			return fmt.Errorf("%w %q: holds %q", ErrInvalidKey, key, c)
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return fmt.Errorf("%w %q: empty, \".\" or \"..\" segment, or a leading or trailing '/'", ErrInvalidKey, key)
		}
	}
	return nil
}

// totalSize parses the total out of a Content-Range header
// ("bytes 5-9/10"); ok is false when there is none.
func totalSize(contentRange string) (total int64, ok bool) {
	_, after, found := strings.Cut(contentRange, "/")
	if !found {
		return 0, false
	}
	total, err := strconv.ParseInt(after, 10, 64)
	return total, err == nil
}

// bodyReader is an object's body as Open returns it: read errors other
// than io.EOF are translated like request errors.
type bodyReader struct {
	ctx context.Context //nolint:containedctx // the ctx of the Open that made the body, for error translation
	key string
	rc  io.ReadCloser
}

func (b *bodyReader) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = wrapErr(b.ctx, "read "+b.key, err)
	}
	return n, err
}

func (b *bodyReader) Close() error { return b.rc.Close() }
