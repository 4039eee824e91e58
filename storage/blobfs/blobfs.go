// Package blobfs implements storage.BlobStore on a local directory: the
// embedded default for media, under parleyd's data directory.
//
// Layout under Config.Dir:
//
//	blobs/ab/cd/<name>   one file per blob; ab/cd are the first four hex
//	                     digits of SHA-256(key), name is the key with '%'
//	                     and '/' percent-encoded, or, when that would be
//	                     longer than a file name may be, "%H" and the
//	                     whole SHA-256(key) in hex
//	tmp/                 uploads in progress; renamed into blobs/ when whole
//
// The fan-out directories come from a hash of the key, not the key's own
// text: callers may give many keys one long prefix ("thumb/…"), and a key
// that is itself a path would make "a" (a file) and "a/b" (under a
// directory "a") collide. With the hash, no directory holds more than
// about 1/65536 of the blobs, and every key is one file name.
//
// Put is atomic (a rename within one file system) and durable when it
// returns (the file and its directory are fsynced).
package blobfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/parley-im/parley/storage"
)

const (
	// MaxKeyLen bounds a key's length in bytes, as S3 does.
	MaxKeyLen = 1024

	// maxNameLen is the longest file name common file systems take.
	maxNameLen = 255

	blobsDir = "blobs"
	tmpDir   = "tmp"

	// staleTempAge is how old a file in tmp/ must be before New deletes
	// it: older than any upload still running (a crash leaves them).
	staleTempAge = 24 * time.Hour

	dirPerm = 0o700
)

// ErrInvalidKey is returned (wrapped) for a key the store refuses: empty,
// too long, not UTF-8, holding a control character, a backslash, an empty,
// "." or ".." segment, or starting or ending with '/'.
var ErrInvalidKey = errors.New("invalid blob key")

// Config configures a Store.
type Config struct {
	// Dir is the store's root directory, created (with parents) when
	// missing. Required. Blobs and uploads in progress live below it;
	// nothing else should write there.
	Dir string `yaml:"dir" env:"DIR"`
}

// Store is a storage.BlobStore on a directory. It is safe for concurrent
// use, also by several Stores (or processes) on one directory: a Put
// never exposes a partial file, and the last Put of a key wins.
type Store struct {
	dir    string
	closed atomic.Bool
}

var _ storage.BlobStore = (*Store)(nil)

// New opens (creating when missing) the store in cfg.Dir and deletes
// uploads a crash left behind in its tmp/ directory.
func New(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("blobfs: Config.Dir is empty")
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("blobfs: %w", err)
	}
	for _, d := range []string{filepath.Join(dir, blobsDir), filepath.Join(dir, tmpDir)} {
		if err := os.MkdirAll(d, dirPerm); err != nil {
			return nil, fmt.Errorf("blobfs: %w", err)
		}
	}
	s := &Store{dir: dir}
	if err := s.removeStaleTemps(time.Now().Add(-staleTempAge)); err != nil {
		return nil, err
	}
	return s, nil
}

// Put stores exactly size bytes read from r under key, replacing any blob
// there; see storage.BlobStore. size may be 0 (an empty blob). The bytes
// go to a temporary file that is fsynced and renamed over the blob's file
// only when all size bytes arrived and r reported its end; the directory
// is fsynced after. contentType is not recorded: a file has nowhere to
// keep it (callers keep it in the media record).
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64, _ string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := validateKey(key); err != nil {
		return fmt.Errorf("blobfs: put: %w", err)
	}
	if size < 0 {
		return fmt.Errorf("blobfs: put %s: negative size %d", key, size)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "put-*")
	if err != nil {
		return fmt.Errorf("blobfs: put %s: %w", key, err)
	}
	committed := false
	defer func() {
		if !committed {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()

	// Read one byte past size: a reader holding more than size bytes is
	// refused, not truncated.
	n, err := io.Copy(tmp, io.LimitReader(ctxReader{ctx: ctx, r: r}, size+1))
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return fmt.Errorf("blobfs: put %s: read: %w", key, err)
	case n < size:
		return fmt.Errorf("blobfs: put %s: reader ended after %d of %d bytes: %w", key, n, size, io.ErrUnexpectedEOF)
	case n > size:
		return fmt.Errorf("blobfs: put %s: reader holds more than %d bytes", key, size)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("blobfs: put %s: %w", key, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("blobfs: put %s: %w", key, err)
	}
	path, err := s.makeParent(key)
	if err != nil {
		return fmt.Errorf("blobfs: put %s: %w", key, err)
	}
	// Last chance to honour ctx: after the rename the blob is stored.
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("blobfs: put %s: %w", key, err)
	}
	committed = true
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("blobfs: put %s: %w", key, err)
	}
	return nil
}

// Open returns the blob's bytes from offset on; see storage.BlobStore.
// The reader is the open file, positioned at offset (it also implements
// io.Seeker, io.ReaderAt and io.WriterTo); ctx governs the call only, not
// later reads. A Put or Delete of the key meanwhile does not disturb an
// open reader: it keeps reading the blob it opened.
func (s *Store) Open(ctx context.Context, key string, offset int64) (io.ReadCloser, storage.BlobInfo, error) {
	if err := s.check(ctx); err != nil {
		return nil, storage.BlobInfo{}, err
	}
	if err := validateKey(key); err != nil {
		return nil, storage.BlobInfo{}, fmt.Errorf("blobfs: open: %w", err)
	}
	f, err := os.Open(s.path(key))
	if err != nil {
		return nil, storage.BlobInfo{}, fmt.Errorf("blobfs: open %s: %w", key, wrapNotFound(err))
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, storage.BlobInfo{}, fmt.Errorf("blobfs: open %s: %w", key, err)
	}
	info := blobInfo(fi)
	if offset < 0 || offset > info.Size {
		_ = f.Close()
		return nil, storage.BlobInfo{}, fmt.Errorf("blobfs: open %s: offset %d outside 0..%d", key, offset, info.Size)
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, storage.BlobInfo{}, fmt.Errorf("blobfs: open %s: %w", key, err)
	}
	return f, info, nil
}

// Stat describes the blob under key, or returns storage.ErrNotFound.
func (s *Store) Stat(ctx context.Context, key string) (storage.BlobInfo, error) {
	if err := s.check(ctx); err != nil {
		return storage.BlobInfo{}, err
	}
	if err := validateKey(key); err != nil {
		return storage.BlobInfo{}, fmt.Errorf("blobfs: stat: %w", err)
	}
	fi, err := os.Stat(s.path(key))
	if err != nil {
		return storage.BlobInfo{}, fmt.Errorf("blobfs: stat %s: %w", key, wrapNotFound(err))
	}
	return blobInfo(fi), nil
}

// Delete removes the blob under key; a missing blob is not an error. The
// removal is durable when Delete returns (the directory is fsynced). The
// fan-out directories stay: a concurrent Put may be about to use them.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := validateKey(key); err != nil {
		return fmt.Errorf("blobfs: delete: %w", err)
	}
	path := s.path(key)
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("blobfs: delete %s: %w", key, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("blobfs: delete %s: %w", key, err)
	}
	return nil
}

// Close marks the store closed: later calls return storage.ErrUnavailable.
// Readers Open returned stay usable until their own Close. Close is
// idempotent.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// check returns ctx's error as it is, or ErrUnavailable after Close.
func (s *Store) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return fmt.Errorf("blobfs: closed: %w", storage.ErrUnavailable)
	}
	return nil
}

// path is the file of key, which must be valid.
func (s *Store) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	h := hex.EncodeToString(sum[:])
	name := encodeKey(key)
	if len(name) > maxNameLen {
		// encodeKey writes '%' only before 25 or 2F, so no short name
		// starts with "%H".
		name = "%H" + h
	}
	return filepath.Join(s.dir, blobsDir, h[:2], h[2:4], name)
}

// makeParent creates the fan-out directories of key's file when missing,
// fsyncing each parent whose entries changed, and returns the file's path.
func (s *Store) makeParent(key string) (string, error) {
	path := s.path(key)
	leaf := filepath.Dir(path)
	if _, err := os.Stat(leaf); err == nil {
		return path, nil
	}
	mid := filepath.Dir(leaf)
	for _, d := range []string{mid, leaf} {
		// Mkdir, not MkdirAll: we need to know which parents changed, and
		// a concurrent Put creating the same directory is fine.
		if err := os.Mkdir(d, dirPerm); err != nil {
			if errors.Is(err, fs.ErrExist) {
				continue
			}
			return "", err
		}
		if err := syncDir(filepath.Dir(d)); err != nil {
			return "", err
		}
	}
	return path, nil
}

// removeStaleTemps deletes files in tmp/ last written before cutoff.
func (s *Store) removeStaleTemps(cutoff time.Time) error {
	dir := filepath.Join(s.dir, tmpDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("blobfs: %w", err)
	}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if fi.Mode().IsRegular() && fi.ModTime().Before(cutoff) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("blobfs: remove stale upload: %w", err)
			}
		}
	}
	return nil
}

// validateKey enforces the key rules ErrInvalidKey lists. A valid key is a
// clean relative slash-separated path, so no encoding of it can name
// anything outside the store, and the same keys work on the S3 backend.
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

// encodeKey maps a valid key to one file name, injectively: '%' and '/'
// become %25 and %2F. A valid key is never "." or "..", so neither is its
// encoding.
func encodeKey(key string) string {
	if !strings.ContainsAny(key, "%/") {
		return key
	}
	return strings.NewReplacer("%", "%25", "/", "%2F").Replace(key)
}

// blobInfo converts a file's info.
func blobInfo(fi fs.FileInfo) storage.BlobInfo {
	return storage.BlobInfo{Size: fi.Size(), ModTime: fi.ModTime().UTC()}
}

// wrapNotFound turns a missing file into storage.ErrNotFound.
func wrapNotFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return storage.ErrNotFound
	}
	return err
}

// syncDir fsyncs a directory, making renames and removals in it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// ctxReader fails reads once ctx has ended, so a Put stops copying soon
// after its ctx ends even when r itself never blocks.
type ctxReader struct {
	ctx context.Context //nolint:containedctx // lives for one Put call
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
