package media_test

import (
	"crypto/sha256"
	"io"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/media"
)

func newStaging(t testing.TB) (*media.Staging, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := media.NewStaging(dir, media.Limits{MaxSize: 1 << 20})
	require.NoError(t, err)
	return s, dir
}

func specFor(uploadID string, content []byte) media.UploadSpec {
	return media.UploadSpec{
		OwnerID:  "u1",
		UploadID: uploadID,
		FileName: "cat.jpg",
		Size:     int64(len(content)),
		SHA256:   sha256.Sum256(content),
	}
}

func content(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

// writeChunks writes b in chunks of size n.
func writeChunks(t *testing.T, p *media.Part, b []byte, n int) {
	t.Helper()
	for len(b) > 0 {
		c := b[:min(n, len(b))]
		w, err := p.Write(c)
		require.NoError(t, err)
		require.Equal(t, len(c), w)
		b = b[len(c):]
	}
}

// requireComplete completes p and checks the content it hands over, read
// twice as the media service does.
func requireComplete(t *testing.T, p *media.Part, want []byte) {
	t.Helper()
	f, done, err := p.Complete()
	require.NoError(t, err)
	got, err := io.ReadAll(f)
	require.NoError(t, err)
	require.Equal(t, want, got)
	again := make([]byte, len(want))
	_, err = f.ReadAt(again, 0)
	if len(want) > 0 {
		require.NoError(t, err)
	}
	require.Equal(t, want, again)
	done()
	done() // a second call does nothing
}

func TestStagingFullUpload(t *testing.T) {
	t.Parallel()
	s, dir := newStaging(t)
	b := content(300_000)
	spec := specFor("up1", b)
	p, err := s.Begin(spec, 0)
	require.NoError(t, err)
	writeChunks(t, p, b, 64<<10)
	require.Equal(t, int64(len(b)), p.Written())
	staged, got, err := s.Staged("u1", "up1")
	require.NoError(t, err)
	require.Equal(t, int64(len(b)), staged)
	require.Equal(t, spec, got)
	requireComplete(t, p, b)

	_, _, err = s.Staged("u1", "up1")
	require.ErrorIs(t, err, media.ErrUploadNotFound)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries, "done removes the staged files")
	require.NoError(t, p.Close(), "Close after Complete does nothing")
}

func TestStagingEmptyUpload(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	p, err := s.Begin(specFor("empty", []byte{}), 0)
	require.NoError(t, err)
	requireComplete(t, p, []byte{})
}

func TestStagingFileNamesAreHashed(t *testing.T) {
	t.Parallel()
	s, dir := newStaging(t)
	b := content(10)
	spec := specFor("../../etc/passwd", b)
	spec.OwnerID = "../owner"
	p, err := s.Begin(spec, 0)
	require.NoError(t, err)
	require.NoError(t, p.Close())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, entries, 2)
	for _, e := range entries {
		require.Regexp(t, `^[0-9a-f]{64}\.(part|json)$`, e.Name())
	}
}

func TestStagingChecksumMismatch(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	b := content(1000)
	spec := specFor("up1", b)
	spec.SHA256[0] ^= 1
	p, err := s.Begin(spec, 0)
	require.NoError(t, err)
	writeChunks(t, p, b, 100)
	_, _, err = p.Complete()
	require.ErrorIs(t, err, media.ErrChecksum)
	_, _, err = s.Staged("u1", "up1")
	require.ErrorIs(t, err, media.ErrUploadNotFound, "a mismatch removes the upload")

	// The client starts over under the same id.
	p, err = s.Begin(specFor("up1", b), 0)
	require.NoError(t, err)
	writeChunks(t, p, b, 100)
	requireComplete(t, p, b)
}

func TestStagingTooLarge(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	big := specFor("big", nil)
	big.Size = 1<<20 + 1
	_, err := s.Begin(big, 0)
	require.ErrorIs(t, err, media.ErrTooLarge)

	b := content(1000)
	p, err := s.Begin(specFor("up1", b), 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:900], 300)
	n, err := p.Write(b[900:]) // exactly fits: fine
	require.NoError(t, err)
	require.Equal(t, 100, n)
	n, err = p.Write([]byte{1})
	require.ErrorIs(t, err, media.ErrTooLarge)
	require.Zero(t, n)
	require.Equal(t, int64(1000), p.Written())
	requireComplete(t, p, b)
}

func TestStagingChunkPastSizeKeepsNothing(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	b := content(1000)
	p, err := s.Begin(specFor("up1", b), 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:600], 600)
	_, err = p.Write(content(500)) // 1100 > 1000: refused whole
	require.ErrorIs(t, err, media.ErrTooLarge)
	require.Equal(t, int64(600), p.Written())
	staged, _, err := s.Staged("u1", "up1")
	require.NoError(t, err)
	require.Equal(t, int64(600), staged)
	writeChunks(t, p, b[600:], 400)
	requireComplete(t, p, b)
}

func TestStagingResume(t *testing.T) {
	t.Parallel()
	s, dir := newStaging(t)
	b := content(250_000)
	spec := specFor("up1", b)
	p, err := s.Begin(spec, 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:100_000], 32<<10)
	require.NoError(t, p.Close())
	require.NoError(t, p.Close(), "Close is idempotent")
	_, err = p.Write([]byte{1})
	require.ErrorIs(t, err, os.ErrClosed)

	// A restarted server: a fresh Staging on the same directory.
	s2, err := media.NewStaging(dir, media.Limits{MaxSize: 1 << 20})
	require.NoError(t, err)
	staged, got, err := s2.Staged("u1", "up1")
	require.NoError(t, err)
	require.Equal(t, int64(100_000), staged)
	require.Equal(t, spec, got)

	p, err = s2.Begin(spec, staged)
	require.NoError(t, err)
	require.Equal(t, staged, p.Written())
	writeChunks(t, p, b[100_000:200_000], 32<<10)
	require.NoError(t, p.Close())

	// Resumed twice; the checksum is read back from disk.
	p, err = s2.Begin(spec, 200_000)
	require.NoError(t, err)
	writeChunks(t, p, b[200_000:], 32<<10)
	requireComplete(t, p, b)
}

func TestStagingResumeChecksumMismatch(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	b := content(1000)
	spec := specFor("up1", b)
	p, err := s.Begin(spec, 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:500], 500)
	require.NoError(t, p.Close())
	p, err = s.Begin(spec, 500)
	require.NoError(t, err)
	writeChunks(t, p, content(500), 500) // the wrong second half
	_, _, err = p.Complete()
	require.ErrorIs(t, err, media.ErrChecksum)
	_, _, err = s.Staged("u1", "up1")
	require.ErrorIs(t, err, media.ErrUploadNotFound)
}

func TestStagingCompleteEarly(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	b := content(1000)
	p, err := s.Begin(specFor("up1", b), 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:400], 400)
	_, _, err = p.Complete()
	require.ErrorIs(t, err, media.ErrOffset)
	// Completing early acts as Close: the bytes stay staged, the Part is
	// ended and the upload free to resume.
	_, err = p.Write(b[400:])
	require.ErrorIs(t, err, os.ErrClosed)
	staged, _, err := s.Staged("u1", "up1")
	require.NoError(t, err)
	require.Equal(t, int64(400), staged)
	p, err = s.Begin(specFor("up1", b), 400)
	require.NoError(t, err)
	writeChunks(t, p, b[400:], 600)
	requireComplete(t, p, b)
}

func TestStagingWrongOffset(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	b := content(1000)
	spec := specFor("up1", b)
	_, err := s.Begin(spec, 10)
	require.ErrorIs(t, err, media.ErrOffset, "a new upload starts at 0")

	p, err := s.Begin(spec, 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:300], 300)
	require.NoError(t, p.Close())
	for _, off := range []int64{0, 299, 301, 1000, -1} {
		_, err := s.Begin(spec, off)
		require.ErrorIs(t, err, media.ErrOffset, "offset %d", off)
		if off >= 0 {
			require.ErrorContains(t, err, "300 bytes staged")
		}
	}
	p, err = s.Begin(spec, 300)
	require.NoError(t, err, "a refused Begin leaves the upload free")
	require.NoError(t, p.Close())
}

func TestStagingSpecMismatch(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	b := content(1000)
	spec := specFor("up1", b)
	p, err := s.Begin(spec, 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:300], 300)
	require.NoError(t, p.Close())

	other := func(f func(*media.UploadSpec)) media.UploadSpec {
		s := spec
		f(&s)
		return s
	}
	for name, bad := range map[string]media.UploadSpec{
		"size":      other(func(s *media.UploadSpec) { s.Size++ }),
		"hash":      other(func(s *media.UploadSpec) { s.SHA256[31] ^= 1 }),
		"file_name": other(func(s *media.UploadSpec) { s.FileName = "dog.jpg" }),
	} {
		_, err := s.Begin(bad, 300)
		require.ErrorIs(t, err, media.ErrSpecMismatch, name)
	}
	// Another owner's upload with the same id is a different upload.
	theirs := other(func(s *media.UploadSpec) { s.OwnerID = "u2" })
	_, err = s.Begin(theirs, 300)
	require.ErrorIs(t, err, media.ErrOffset)
	_, _, err = s.Staged("u2", "up1")
	require.ErrorIs(t, err, media.ErrUploadNotFound)
}

func TestStagingConcurrentBegin(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	b := content(1000)
	spec := specFor("up1", b)

	const n = 8
	start := make(chan struct{})
	parts := make(chan *media.Part, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			<-start
			p, err := s.Begin(spec, 0)
			if err != nil {
				errs <- err
				return
			}
			parts <- p
		})
	}
	close(start)
	wg.Wait()
	close(parts)
	close(errs)
	require.Len(t, parts, 1, "exactly one writer")
	for err := range errs {
		require.ErrorIs(t, err, media.ErrUploadBusy)
	}
	p := <-parts

	// While it is open, the upload cannot be begun, removed or swept.
	_, err := s.Begin(spec, 0)
	require.ErrorIs(t, err, media.ErrUploadBusy)
	require.ErrorIs(t, s.Remove("u1", "up1"), media.ErrUploadBusy)
	swept, err := s.Sweep(time.Now().Add(24*time.Hour), time.Hour)
	require.NoError(t, err)
	require.Zero(t, swept)

	writeChunks(t, p, b[:10], 10)
	require.NoError(t, p.Close())
	p, err = s.Begin(spec, 10)
	require.NoError(t, err)
	require.NoError(t, p.Close())
}

func TestStagingUploadsAreIndependent(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			b := content(50_000 + i)
			p, err := s.Begin(specFor("up"+strconv.Itoa(i), b), 0)
			if !assertNoError(t, err) {
				return
			}
			for c := range slices.Chunk(b, 4096) {
				if _, err := p.Write(c); !assertNoError(t, err) {
					return
				}
			}
			_, done, err := p.Complete()
			if assertNoError(t, err) {
				done()
			}
		})
	}
	wg.Wait()
}

// assertNoError reports err from any goroutine (require may only stop the
// test's own).
func assertNoError(t *testing.T, err error) bool {
	t.Helper()
	if err != nil {
		t.Error(err)
		return false
	}
	return true
}

func TestStagingRemove(t *testing.T) {
	t.Parallel()
	s, dir := newStaging(t)
	require.ErrorIs(t, s.Remove("u1", "nope"), media.ErrUploadNotFound)
	b := content(100)
	p, err := s.Begin(specFor("up1", b), 0)
	require.NoError(t, err)
	writeChunks(t, p, b[:50], 50)
	require.NoError(t, p.Close())
	require.NoError(t, s.Remove("u1", "up1"))
	_, _, err = s.Staged("u1", "up1")
	require.ErrorIs(t, err, media.ErrUploadNotFound)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

func TestStagingSweep(t *testing.T) {
	t.Parallel()
	s, dir := newStaging(t)
	b := content(100)
	for _, id := range []string{"old1", "old2"} {
		p, err := s.Begin(specFor(id, b), 0)
		require.NoError(t, err)
		writeChunks(t, p, b[:40], 40)
		require.NoError(t, p.Close())
	}
	open, err := s.Begin(specFor("open", b), 0)
	require.NoError(t, err)
	// Someone else's file in the directory is left alone.
	require.NoError(t, os.WriteFile(dir+"/README", []byte("hi"), 0o600))

	now := time.Now()
	swept, err := s.Sweep(now, time.Hour)
	require.NoError(t, err)
	require.Zero(t, swept, "nothing is an hour old yet")

	swept, err = s.Sweep(now.Add(2*time.Hour), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, swept, "the open upload is spared")
	for _, id := range []string{"old1", "old2"} {
		_, _, err := s.Staged("u1", id)
		require.ErrorIs(t, err, media.ErrUploadNotFound)
	}
	_, err = os.Stat(dir + "/README")
	require.NoError(t, err)

	writeChunks(t, open, b, 100)
	requireComplete(t, open, b)
}

func TestStagingBeginValidates(t *testing.T) {
	t.Parallel()
	s, _ := newStaging(t)
	for name, spec := range map[string]media.UploadSpec{
		"no_owner":      {UploadID: "x"},
		"no_upload_id":  {OwnerID: "x"},
		"negative_size": {OwnerID: "x", UploadID: "y", Size: -1},
	} {
		_, err := s.Begin(spec, 0)
		require.Error(t, err, name)
	}
}

// BenchmarkStaging100MiB streams 100 MiB in 1 MiB chunks through
// Begin/Write/Complete. peak-heap-B is the largest growth of HeapInuse
// seen after any chunk, over the heap before the upload: it stays near
// the chunk size, not the upload size.
func BenchmarkStaging100MiB(b *testing.B) {
	const chunkSize, chunks = 1 << 20, 100
	dir := b.TempDir()
	s, err := media.NewStaging(dir, media.Limits{})
	require.NoError(b, err)
	chunk := content(chunkSize)
	h := sha256.New()
	for range chunks {
		h.Write(chunk)
	}
	spec := media.UploadSpec{OwnerID: "u1", Size: chunkSize * chunks}
	h.Sum(spec.SHA256[:0])

	b.SetBytes(spec.Size)
	b.ReportAllocs()
	var ms runtime.MemStats
	var peak uint64
	i := 0
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		i++
		spec.UploadID = "up" + strconv.Itoa(i)
		p, err := s.Begin(spec, 0)
		if err != nil {
			b.Fatal(err)
		}
		for range chunks {
			if _, err := p.Write(chunk); err != nil {
				b.Fatal(err)
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > base {
				peak = max(peak, ms.HeapInuse-base)
			}
		}
		f, done, err := p.Complete()
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, f); err != nil {
			b.Fatal(err)
		}
		done()
	}
	b.ReportMetric(float64(peak), "peak-heap-B")
}
