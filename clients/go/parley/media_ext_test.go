package parley_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"image"
	"image/color"
	_ "image/jpeg" // thumbnails may be JPEG
	"image/png"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/clients/go/parley"
)

// fastRetry keeps the backoff waits of these tests short.
var fastRetry = parley.WithTransferBackoff(time.Millisecond, 10*time.Millisecond)

// patient is for resuming an upload whose previous stream broke: until the
// server notices, the upload stays busy (Aborted), which can take a loaded
// -race server a while.
var patient = []parley.UploadOption{parley.WithTransferBackoff(50*time.Millisecond, time.Second), parley.WithAttempts(12)}

// TestMediaAgainstParleyd runs uploads, downloads and media messages
// against a real parleyd. Alice and Bob share a direct conversation; Carol
// shares nothing with them.
func TestMediaAgainstParleyd(t *testing.T) {
	srv := startParleyd(t)
	alice := register(t, srv.url, "alice")
	bob := register(t, srv.url, "bob")
	carol := register(t, srv.url, "carol")
	conv := directConversation(t, alice, bob)

	t.Run("round_trips", func(t *testing.T) {
		t.Parallel()
		for _, size := range []int{1, 1 << 20, 3<<20 + 7} {
			data := pattern(size)
			info, err := alice.Upload(t.Context(), bytes.NewReader(data), int64(size), "data.bin")
			require.NoError(t, err, "size %d", size)
			sum := sha256.Sum256(data)
			require.Equal(t, sum[:], info.GetSha256())
			require.Equal(t, uint64(size), info.GetSizeBytes())
			require.Equal(t, "data.bin", info.GetFileName())
			require.Equal(t, alice.UserID(), info.GetUploaderId())
			require.Nil(t, info.GetThumbnail())

			var got bytes.Buffer
			dinfo, err := alice.Download(t.Context(), info.GetMediaId(), &got)
			require.NoError(t, err, "size %d", size)
			require.Equal(t, data, got.Bytes(), "size %d", size)
			require.Equal(t, info.GetMediaId(), dinfo.GetMediaId())
		}
	})

	t.Run("empty_rejected", func(t *testing.T) {
		t.Parallel()
		_, err := alice.Upload(t.Context(), bytes.NewReader(nil), 0, "empty")
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
	})

	t.Run("image_with_thumbnail", func(t *testing.T) {
		t.Parallel()
		data := pngOf(t, 640, 400)
		info, err := alice.Upload(t.Context(), bytes.NewReader(data), int64(len(data)), "cat.png")
		require.NoError(t, err)
		require.Equal(t, "image/png", info.GetContentType())
		require.Equal(t, []uint32{640, 400}, []uint32{info.GetWidth(), info.GetHeight()})
		thumb := info.GetThumbnail()
		require.NotNil(t, thumb)
		require.Equal(t, []uint32{320, 200}, []uint32{thumb.GetWidth(), thumb.GetHeight()})

		var tb bytes.Buffer
		_, err = alice.Download(t.Context(), info.GetMediaId(), &tb, parley.WithThumbnail())
		require.NoError(t, err)
		require.Equal(t, thumb.GetSizeBytes(), uint64(tb.Len()))
		cfg, format, err := image.DecodeConfig(&tb)
		require.NoError(t, err)
		require.Equal(t, thumb.GetContentType(), "image/"+format)
		require.Equal(t, []int{320, 200}, []int{cfg.Width, cfg.Height})

		// Sent to Bob, the image is his to read too, with what the server
		// found filled in; Carol still sees nothing.
		_, err = bob.Download(t.Context(), info.GetMediaId(), io.Discard)
		require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "not shared yet: %v", err)
		msg := send(t, alice, conv, parley.Image(info.GetMediaId(), "look"))
		ref := msg.GetContent().GetImage()
		require.Equal(t, "image/png", ref.GetContentType())
		require.Equal(t, "cat.png", ref.GetFileName())
		require.Equal(t, uint64(len(data)), ref.GetSizeBytes())
		require.Equal(t, []uint32{640, 400}, []uint32{ref.GetWidth(), ref.GetHeight()})
		require.Equal(t, "look", ref.GetCaption())
		var got bytes.Buffer
		_, err = bob.Download(t.Context(), info.GetMediaId(), &got)
		require.NoError(t, err)
		require.Equal(t, data, got.Bytes())
		_, err = bob.Download(t.Context(), info.GetMediaId(), io.Discard, parley.WithThumbnail())
		require.NoError(t, err)
		_, err = carol.Download(t.Context(), info.GetMediaId(), io.Discard)
		require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
	})

	t.Run("file_has_no_thumbnail", func(t *testing.T) {
		t.Parallel()
		info := uploadBytes(t, alice, []byte("just text\n"), "notes.txt")
		_, err := alice.Download(t.Context(), info.GetMediaId(), io.Discard, parley.WithThumbnail())
		require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
	})

	t.Run("non_member_download_not_found", func(t *testing.T) {
		t.Parallel()
		info := uploadBytes(t, alice, pattern(100), "secret.bin")
		_, err := carol.Download(t.Context(), info.GetMediaId(), io.Discard)
		require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
		_, err = carol.Download(t.Context(), "0190aaaa-0000-7000-8000-000000000000", io.Discard)
		require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "unknown ids look the same: %v", err)
	})

	t.Run("someone_elses_media_not_found", func(t *testing.T) {
		t.Parallel()
		info := uploadBytes(t, alice, pngOf(t, 8, 8), "a.png")
		_, err := bob.Chat().SendMessage(t.Context(), &parleyv1.SendMessageRequest{
			ConversationId: conv, ClientMsgId: "bob-steals-1", Content: parley.Image(info.GetMediaId(), ""),
		})
		require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)
	})

	t.Run("text_as_image_invalid", func(t *testing.T) {
		t.Parallel()
		info := uploadBytes(t, alice, []byte("not a picture\n"), "readme.txt")
		_, err := alice.Chat().SendMessage(t.Context(), &parleyv1.SendMessageRequest{
			ConversationId: conv, ClientMsgId: "alice-txt-img", Content: parley.Image(info.GetMediaId(), ""),
		})
		require.Equal(t, connect.CodeInvalidArgument, connect.CodeOf(err), "%v", err)
		// As a file it goes through, described by the server.
		msg := send(t, alice, conv, parley.File(info.GetMediaId(), ""))
		ref := msg.GetContent().GetFile()
		require.Equal(t, "readme.txt", ref.GetFileName())
		require.Equal(t, uint64(14), ref.GetSizeBytes())
		require.True(t, strings.HasPrefix(ref.GetContentType(), "text/plain"), ref.GetContentType())
	})

	t.Run("upload_file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "report.pdf")
		data := pattern(70_000)
		require.NoError(t, os.WriteFile(path, data, 0o600))
		info, err := alice.UploadFile(t.Context(), path)
		require.NoError(t, err)
		require.Equal(t, "report.pdf", info.GetFileName())
		require.Equal(t, uint64(len(data)), info.GetSizeBytes())
	})

	t.Run("resume_after_read_error", func(t *testing.T) {
		t.Parallel()
		data := pattern(3<<20 + 7)
		errDisk := errors.New("disk on fire")
		r := parley.NewFailingReaderAt(bytes.NewReader(data), 2<<20, 1, errDisk)
		_, err := alice.Upload(t.Context(), r, int64(len(data)), "big.bin", parley.WithUploadID("read-error-1"))
		require.ErrorIs(t, err, errDisk)
		// The server keeps what reached it (what was sent before the
		// failing read, at most), and the same id picks up from there.
		held, err := alice.Media().GetUpload(t.Context(), &parleyv1.GetUploadRequest{UploadId: "read-error-1"})
		if connect.CodeOf(err) != connect.CodeNotFound {
			require.NoError(t, err)
			require.LessOrEqual(t, held.GetReceivedBytes(), uint64(2<<20))
		}
		info, err := alice.Upload(t.Context(), r, int64(len(data)), "big.bin", append(patient, parley.WithUploadID("read-error-1"))...)
		require.NoError(t, err)
		requireDownload(t, alice, info.GetMediaId(), data)
		requireOneBlob(t, srv.dataDir, data)
		_, err = alice.Media().GetUpload(t.Context(), &parleyv1.GetUploadRequest{UploadId: "read-error-1"})
		require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "nothing left staged: %v", err)
	})
}

// TestMediaResumesBrokenStreams cuts the connection under an upload and a
// download; the SDK resumes each where the server's count (or its own)
// says, so about one copy of the bytes crosses the wire.
func TestMediaResumesBrokenStreams(t *testing.T) {
	srv := startParleyd(t)
	cut := &cuttingTransport{next: h2cTransport(t)}
	alice := register(t, srv.url, "alice", parley.WithHTTPClient(&http.Client{Transport: cut}))

	data := pattern(5<<20 + 3)
	cut.arm(parleyv1connect.MediaServiceUploadProcedure, 2<<20+512)
	info, err := alice.Upload(t.Context(), bytes.NewReader(data), int64(len(data)), "big.bin", patient...)
	require.NoError(t, err)
	require.Equal(t, 1, cut.cuts(), "the first stream was cut")
	require.Less(t, cut.requestBytes(), int64(len(data)+(2<<20)), "the resumed stream sent the rest, not everything again")
	requireOneBlob(t, srv.dataDir, data)

	cut.arm(parleyv1connect.MediaServiceDownloadProcedure, 1<<20)
	var got bytes.Buffer
	dinfo, err := alice.Download(t.Context(), info.GetMediaId(), &got, fastRetry)
	require.NoError(t, err)
	require.Equal(t, 2, cut.cuts(), "the first download stream was cut")
	require.Equal(t, data, got.Bytes())
	require.Equal(t, info.GetSha256(), dinfo.GetSha256())
}

func register(t *testing.T, url, name string, opts ...parley.Option) *parley.Client {
	t.Helper()
	c, err := parley.Register(t.Context(), url, name, "correct horse battery staple", opts...)
	require.NoError(t, err)
	return c
}

func directConversation(t *testing.T, a, b *parley.Client) string {
	t.Helper()
	res, err := a.Conversations().CreateDirect(t.Context(), &parleyv1.CreateDirectRequest{
		Peer: &parleyv1.CreateDirectRequest_UserId{UserId: b.UserID()},
	})
	require.NoError(t, err)
	return res.GetConversation().GetId()
}

var msgIDs atomic.Int64

func send(t *testing.T, c *parley.Client, conv string, content *parleyv1.Content) *parleyv1.Message {
	t.Helper()
	res, err := c.Chat().SendMessage(t.Context(), &parleyv1.SendMessageRequest{
		ConversationId: conv, ClientMsgId: fmt.Sprintf("m-%d", msgIDs.Add(1)), Content: content,
	})
	require.NoError(t, err)
	return res.GetMessage()
}

func uploadBytes(t *testing.T, c *parley.Client, data []byte, name string) *parleyv1.MediaInfo {
	t.Helper()
	info, err := c.Upload(t.Context(), bytes.NewReader(data), int64(len(data)), name)
	require.NoError(t, err)
	return info
}

func requireDownload(t *testing.T, c *parley.Client, mediaID string, want []byte) {
	t.Helper()
	var got bytes.Buffer
	_, err := c.Download(t.Context(), mediaID, &got)
	require.NoError(t, err)
	require.Equal(t, want, got.Bytes())
}

// requireOneBlob checks that the server stored data's bytes exactly once:
// blobs are files named by their SHA-256 under <data_dir>/media.
func requireOneBlob(t *testing.T, dataDir string, data []byte) {
	t.Helper()
	sum := sha256.Sum256(data)
	name := hex.EncodeToString(sum[:])
	n := 0
	err := filepath.WalkDir(filepath.Join(dataDir, "media"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && d.Name() == name {
			n++
		}
		return err
	})
	require.NoError(t, err)
	require.Equal(t, 1, n, "blob %s", name)
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	return b.Bytes()
}

func h2cTransport(t *testing.T) *http.Transport {
	t.Helper()
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// cuttingTransport breaks one call of an armed procedure after a number of
// bytes of its request body (an upload) or response body (a download), as
// a dropped connection would.
type cuttingTransport struct {
	next http.RoundTripper

	mu        sync.Mutex
	procedure string // armed: the next call of it is cut
	after     int64
	ncuts     int
	reqBytes  atomic.Int64
}

var errCut = errors.New("connection cut by the test")

func (c *cuttingTransport) arm(procedure string, after int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.procedure, c.after = procedure, after
}

func (c *cuttingTransport) cuts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ncuts
}

func (c *cuttingTransport) requestBytes() int64 { return c.reqBytes.Load() }

func (c *cuttingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	cut := c.procedure != "" && strings.HasSuffix(req.URL.Path, c.procedure)
	after := c.after
	if cut {
		c.procedure = ""
		c.ncuts++
	}
	c.mu.Unlock()
	upload := strings.HasSuffix(req.URL.Path, parleyv1connect.MediaServiceUploadProcedure)
	if upload && req.Body != nil {
		limit := int64(-1)
		if cut {
			limit = after
		}
		req.Body = &cutReader{r: req.Body, limit: limit, count: &c.reqBytes}
	}
	res, err := c.next.RoundTrip(req)
	if err == nil && cut && !upload {
		res.Body = &cutReader{r: res.Body, limit: after, count: new(atomic.Int64)}
	}
	return res, err
}

// cutReader fails once limit bytes went through (never when limit < 0),
// counting them into count.
type cutReader struct {
	r     io.ReadCloser
	limit int64
	n     int64
	count *atomic.Int64
}

func (r *cutReader) Read(p []byte) (int, error) {
	if r.limit >= 0 {
		if r.n >= r.limit {
			return 0, errCut
		}
		p = p[:min(int64(len(p)), r.limit-r.n)]
	}
	n, err := r.r.Read(p)
	r.n += int64(n)
	r.count.Add(int64(n))
	return n, err
}

func (r *cutReader) Close() error { return r.r.Close() }
