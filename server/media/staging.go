package media

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Staged file names: <key><ext>, key being 64 hex digits (see uploadKey).
const (
	partExt    = ".part"     // the bytes received so far
	specExt    = ".json"     // the sidecar: the upload's spec
	specTmpExt = ".json.tmp" // a sidecar being written
	keyLen     = sha256.Size * 2
	sidecarVer = 1
)

// UploadSpec is what a client declares when it starts an upload; a resume
// must declare the same.
type UploadSpec struct {
	// OwnerID is the uploading user, UploadID the client's id for this
	// upload; together they name the upload. Both must be non-empty; they
	// never become file names.
	OwnerID, UploadID string
	// FileName is the client's name for the file; informational.
	FileName string
	// Size is the exact number of bytes the upload will hold.
	Size int64
	// SHA256 is the hash of the complete content.
	SHA256 [32]byte
}

// Staging holds uploads in progress on local disk, so that an interrupted
// upload resumes from the last acknowledged byte instead of starting over.
//
// Each upload is a file named from a hash of (OwnerID, UploadID), never
// from the client's strings, plus a small JSON sidecar with its spec.
// Bytes are streamed to disk: memory per upload stays at the caller's
// chunk. One Staging owns its directory; two Stagings (or processes) on
// the same directory do not coordinate. Staging is safe for concurrent
// use; each upload has at most one user at a time (a Part being written
// or completed, a Remove or a Sweep), and others get ErrUploadBusy.
type Staging struct {
	dir    string
	limits Limits

	mu   sync.Mutex
	busy map[string]struct{} // upload keys in use; guarded by mu
}

// NewStaging returns a Staging keeping uploads in dir, created (0700)
// when missing. Uploads left there by a previous run can be resumed. Zero
// fields of limits take their defaults; only MaxSize is used here.
func NewStaging(dir string, limits Limits) (*Staging, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("media: staging dir: %w", err)
	}
	return &Staging{dir: dir, limits: limits.withDefaults(), busy: make(map[string]struct{})}, nil
}

// Begin opens an upload for writing at offset, the client's idea of how
// many bytes are already staged.
//
// A new upload (nothing staged under OwnerID and UploadID) starts at
// offset 0, else ErrOffset. A resumed upload must declare the same spec
// as the staged one, else ErrSpecMismatch, and offset must be exactly the
// number of bytes staged, else ErrOffset (its message gives the staged
// count; Staged returns it). A Size over Limits.MaxSize is ErrTooLarge.
// While the returned Part is open (until Close, or Complete's done), any
// other Begin, Remove or Sweep of the same upload gets ErrUploadBusy.
func (s *Staging) Begin(spec UploadSpec, offset int64) (*Part, error) {
	switch {
	case spec.OwnerID == "" || spec.UploadID == "":
		return nil, errors.New("media: upload needs an owner id and an upload id")
	case spec.Size < 0:
		return nil, fmt.Errorf("media: upload size %d is negative", spec.Size)
	case spec.Size > s.limits.MaxSize:
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, spec.Size, s.limits.MaxSize)
	case offset < 0:
		return nil, fmt.Errorf("%w: offset %d is negative", ErrOffset, offset)
	}
	key := uploadKey(spec.OwnerID, spec.UploadID)
	if !s.acquire(key) {
		return nil, fmt.Errorf("%w: upload %q is being written", ErrUploadBusy, spec.UploadID)
	}
	p, err := s.begin(key, spec, offset)
	if err != nil {
		s.release(key)
		return nil, err
	}
	return p, nil
}

// Staged reports how many bytes are held for an upload (what its client
// resumes from) and the spec it was begun with; ErrUploadNotFound when
// none is staged. While a Part is writing, the count includes bytes not
// yet acknowledged by Close.
func (s *Staging) Staged(ownerID, uploadID string) (int64, UploadSpec, error) {
	key := uploadKey(ownerID, uploadID)
	spec, err := s.readSpec(key, ownerID, uploadID)
	if err != nil {
		return 0, UploadSpec{}, err
	}
	st, err := os.Stat(s.path(key, partExt))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, spec, nil
	case err != nil:
		return 0, UploadSpec{}, fmt.Errorf("media: stat upload: %w", err)
	}
	return st.Size(), spec, nil
}

// Remove deletes a staged upload, e.g. when its client gives up.
// ErrUploadNotFound when none is staged; ErrUploadBusy while it is being
// written or completed.
func (s *Staging) Remove(ownerID, uploadID string) error {
	key := uploadKey(ownerID, uploadID)
	if !s.acquire(key) {
		return fmt.Errorf("%w: upload %q is being written", ErrUploadBusy, uploadID)
	}
	defer s.release(key)
	if _, err := s.readSpec(key, ownerID, uploadID); err != nil {
		return err
	}
	return s.removeFiles(key)
}

// Sweep removes staged uploads whose files were last written before
// now-maxAge (abandoned by their clients), skipping those in use, and
// returns how many it removed. Begin counts as a write, so a client that
// keeps resuming keeps its upload. It carries on past a failure to remove
// one upload and returns the failures joined.
func (s *Staging) Sweep(now time.Time, maxAge time.Duration) (int, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return 0, fmt.Errorf("media: sweep: %w", err)
	}
	// Newest modification time per upload key, over all its files.
	newest := make(map[string]time.Time)
	for _, e := range entries {
		key, ok := keyOf(e.Name())
		if !ok {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		if t := info.ModTime(); t.After(newest[key]) {
			newest[key] = t
		}
	}
	removed := 0
	var errs []error
	for key, t := range newest {
		if now.Sub(t) <= maxAge || !s.acquire(key) {
			continue
		}
		if err := s.removeFiles(key); err != nil {
			errs = append(errs, err)
		} else {
			removed++
		}
		s.release(key)
	}
	return removed, errors.Join(errs...)
}

// Part is an upload open for writing, returned by Staging.Begin. It is
// used by one goroutine at a time. Exactly one of Close or Complete (and
// then its done func) ends it; until then the upload is busy.
type Part struct {
	s    *Staging
	key  string
	spec UploadSpec
	f    *os.File // nil once closed or completed

	written int64
	// h hashes the content as it is written; nil when the upload was
	// resumed (the bytes before the resume point were hashed by a previous
	// Part, whose state is gone), and Complete reads the file back.
	h hash.Hash
}

// Write appends chunk to the staged upload. A chunk that would take the
// upload past its declared Size is refused whole with ErrTooLarge: nothing
// of it is kept, and the Part stays usable. The bytes are on disk but not
// yet durable; Close or Sync makes them so.
func (p *Part) Write(chunk []byte) (int, error) {
	if p.f == nil {
		return 0, fmt.Errorf("media: write upload: %w", os.ErrClosed)
	}
	if int64(len(chunk)) > p.spec.Size-p.written {
		return 0, fmt.Errorf("%w: %d more bytes after %d, declared %d",
			ErrTooLarge, len(chunk), p.written, p.spec.Size)
	}
	n, err := p.f.Write(chunk)
	p.written += int64(n)
	if p.h != nil {
		p.h.Write(chunk[:n])
	}
	if err != nil {
		return n, fmt.Errorf("media: write upload: %w", err)
	}
	return n, nil
}

// Written returns how many bytes the upload holds: those staged before
// Begin plus those written since.
func (p *Part) Written() int64 { return p.written }

// Spec returns the upload's spec.
func (p *Part) Spec() UploadSpec { return p.spec }

// Sync makes the bytes written so far durable, so that Written can be
// acknowledged to the client while the Part stays open.
func (p *Part) Sync() error {
	if p.f == nil {
		return fmt.Errorf("media: sync upload: %w", os.ErrClosed)
	}
	if err := p.f.Sync(); err != nil {
		return fmt.Errorf("media: sync upload: %w", err)
	}
	return nil
}

// Close syncs what was written (so Written is what a resume starts from:
// the acknowledged bytes), keeps it staged, and frees the upload for the
// next Begin. Closing twice, or after a successful Complete, does
// nothing.
func (p *Part) Close() error {
	if p.f == nil {
		return nil
	}
	f := p.f
	p.f = nil
	defer p.s.release(p.key)
	err := f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("media: close upload: %w", err)
	}
	return nil
}

// Complete checks that the upload holds exactly Size bytes hashing to the
// declared SHA256, and hands over its content: f is positioned at 0 and
// may be read as often as needed (Seek, ReadAt) but not written; done
// closes it and deletes the staged upload, and must be called (more calls
// do nothing). The upload stays busy until done.
//
// Complete always ends the Part: on success f and done take over; on
// failure nothing is left to close. With fewer than Size bytes it acts as
// Close (what arrived stays staged, synced, for the client to resume
// from) and returns ErrOffset. On a hash mismatch it returns ErrChecksum
// and deletes the staged upload: the client starts over.
//
// The hash is computed while writing, unless the upload was resumed: then
// the file is read back, streamed, never held in memory.
func (p *Part) Complete() (f *os.File, done func(), err error) {
	if p.f == nil {
		return nil, nil, fmt.Errorf("media: complete upload: %w", os.ErrClosed)
	}
	if p.written != p.spec.Size {
		err := fmt.Errorf("%w: upload holds %d of %d bytes", ErrOffset, p.written, p.spec.Size)
		if cerr := p.Close(); cerr != nil {
			return nil, nil, errors.Join(err, cerr)
		}
		return nil, nil, err
	}
	f = p.f
	p.f = nil
	finish := sync.OnceFunc(func() {
		_ = f.Close()
		_ = p.s.removeFiles(p.key) // Sweep removes what is left on failure
		p.s.release(p.key)
	})

	var sum [sha256.Size]byte
	if p.h != nil {
		p.h.Sum(sum[:0])
	} else {
		h := sha256.New()
		if _, err := io.Copy(h, io.NewSectionReader(f, 0, p.spec.Size)); err != nil {
			// Keep the bytes: a read error is ours, not the client's.
			_ = f.Close()
			p.s.release(p.key)
			return nil, nil, fmt.Errorf("media: read back upload: %w", err)
		}
		h.Sum(sum[:0])
	}
	if sum != p.spec.SHA256 {
		finish()
		return nil, nil, fmt.Errorf("%w: content hashes to %x…, declared %x…",
			ErrChecksum, sum[:4], p.spec.SHA256[:4])
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		finish()
		return nil, nil, fmt.Errorf("media: complete upload: %w", err)
	}
	return f, finish, nil
}

// begin opens or creates the upload's files; the caller holds key.
func (s *Staging) begin(key string, spec UploadSpec, offset int64) (*Part, error) {
	partPath := s.path(key, partExt)
	old, err := s.readSpec(key, spec.OwnerID, spec.UploadID)
	if errors.Is(err, ErrUploadNotFound) {
		if offset != 0 {
			return nil, fmt.Errorf("%w: nothing staged, start at 0 not %d", ErrOffset, offset)
		}
		// The part file first: a sidecar always names an existing part,
		// bar a crash, which Sweep cleans up.
		f, err := os.OpenFile(partPath, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("media: create upload: %w", err)
		}
		if err := s.writeSpec(key, spec); err != nil {
			_ = f.Close()
			_ = os.Remove(partPath)
			return nil, err
		}
		return &Part{s: s, key: key, spec: spec, f: f, h: sha256.New()}, nil
	}
	if err != nil {
		return nil, err
	}
	if old != spec {
		return nil, fmt.Errorf("%w: upload %q was begun with another file name, size or hash", ErrSpecMismatch, spec.UploadID)
	}
	f, err := os.OpenFile(partPath, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("media: open upload: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("media: open upload: %w", err)
	}
	staged := st.Size()
	if offset != staged {
		_ = f.Close()
		return nil, fmt.Errorf("%w: %d bytes staged, offset %d", ErrOffset, staged, offset)
	}
	if _, err := f.Seek(staged, io.SeekStart); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("media: open upload: %w", err)
	}
	// A resume is activity: keep Sweep away from it.
	now := time.Now()
	if err := os.Chtimes(partPath, now, now); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("media: open upload: %w", err)
	}
	p := &Part{s: s, key: key, spec: spec, f: f, written: staged}
	if staged == 0 {
		p.h = sha256.New()
	}
	return p, nil
}

// sidecar is the JSON form of an UploadSpec.
type sidecar struct {
	Version  int    `json:"version"`
	OwnerID  string `json:"owner_id"`
	UploadID string `json:"upload_id"`
	FileName string `json:"file_name"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// readSpec loads an upload's sidecar; ErrUploadNotFound when there is
// none, or when it names another upload (a hash collision, in theory).
func (s *Staging) readSpec(key, ownerID, uploadID string) (UploadSpec, error) {
	b, err := os.ReadFile(s.path(key, specExt))
	if errors.Is(err, fs.ErrNotExist) {
		return UploadSpec{}, fmt.Errorf("%w: %q", ErrUploadNotFound, uploadID)
	}
	if err != nil {
		return UploadSpec{}, fmt.Errorf("media: read upload spec: %w", err)
	}
	var sc sidecar
	if err := json.Unmarshal(b, &sc); err != nil {
		return UploadSpec{}, fmt.Errorf("media: read upload spec: %w", err)
	}
	spec := UploadSpec{OwnerID: sc.OwnerID, UploadID: sc.UploadID, FileName: sc.FileName, Size: sc.Size}
	if n, err := hex.Decode(spec.SHA256[:], []byte(sc.SHA256)); err != nil || n != sha256.Size {
		return UploadSpec{}, fmt.Errorf("media: read upload spec: bad sha256 %q", sc.SHA256)
	}
	if spec.OwnerID != ownerID || spec.UploadID != uploadID {
		return UploadSpec{}, fmt.Errorf("%w: %q", ErrUploadNotFound, uploadID)
	}
	return spec, nil
}

// writeSpec writes an upload's sidecar atomically (temp file, sync,
// rename).
func (s *Staging) writeSpec(key string, spec UploadSpec) error {
	b, err := json.Marshal(sidecar{
		Version:  sidecarVer,
		OwnerID:  spec.OwnerID,
		UploadID: spec.UploadID,
		FileName: spec.FileName,
		Size:     spec.Size,
		SHA256:   hex.EncodeToString(spec.SHA256[:]),
	})
	if err != nil {
		return fmt.Errorf("media: write upload spec: %w", err)
	}
	tmp := s.path(key, specTmpExt)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("media: write upload spec: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.path(key, specExt))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("media: write upload spec: %w", err)
	}
	return nil
}

// removeFiles deletes an upload's files, the sidecar first so that a
// half-removed upload reads as absent.
func (s *Staging) removeFiles(key string) error {
	var errs []error
	for _, ext := range []string{specExt, specTmpExt, partExt} {
		if err := os.Remove(s.path(key, ext)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("media: remove upload: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (s *Staging) path(key, ext string) string { return filepath.Join(s.dir, key+ext) }

// acquire marks key in use; false when it already is.
func (s *Staging) acquire(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.busy[key]; ok {
		return false
	}
	s.busy[key] = struct{}{}
	return true
}

func (s *Staging) release(key string) {
	s.mu.Lock()
	delete(s.busy, key)
	s.mu.Unlock()
}

// uploadKey names an upload's files: a hash of its owner and id, so that
// no client string reaches the file system. The owner id is
// length-prefixed so that ("ab", "c") and ("a", "bc") differ.
func uploadKey(ownerID, uploadID string) string {
	h := sha256.New()
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(ownerID)))
	h.Write([]byte("parley upload\x00"))
	h.Write(n[:])
	h.Write([]byte(ownerID))
	h.Write([]byte(uploadID))
	return hex.EncodeToString(h.Sum(nil))
}

// keyOf returns the upload key a staged file name belongs to.
func keyOf(name string) (string, bool) {
	if len(name) <= keyLen {
		return "", false
	}
	key, ext := name[:keyLen], name[keyLen:]
	if ext != partExt && ext != specExt && ext != specTmpExt {
		return "", false
	}
	if strings.Trim(key, "0123456789abcdef") != "" {
		return "", false
	}
	return key, true
}
