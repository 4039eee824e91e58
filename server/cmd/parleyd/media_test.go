package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// mediaLimit is the upload limit the media tests run with, so that "up to
// the limit" stays quick.
const mediaLimit = 3<<20 + 5

func mediaServer(t *testing.T) (*testServer, string) {
	t.Helper()
	dataDir := t.TempDir()
	ts := startServerEnv(t, map[string]string{"PARLEY_MEDIA_MAX_SIZE": fmt.Sprint(mediaLimit)}, "-data-dir", dataDir)
	return ts, dataDir
}

func mediaClient(hc *http.Client, url string, u *user) parleyv1connect.MediaServiceClient {
	return parleyv1connect.NewMediaServiceClient(connect.NewClient(connecthttp.NewTransport(hc, url), bearer(u.token)))
}

// upload sends data from offset on in 1 MiB chunks, declaring the whole
// file's size and SHA-256 (declared, when not nil, replaces the real one).
func upload(ctx context.Context, mc parleyv1connect.MediaServiceClient, id, name string, data []byte, offset int, declared []byte) (*parleyv1.MediaInfo, error) {
	if declared == nil {
		sum := sha256.Sum256(data)
		declared = sum[:]
	}
	st, err := mc.Upload(ctx)
	if err != nil {
		return nil, err
	}
	hdr := &parleyv1.UploadHeader{UploadId: id, FileName: name, SizeBytes: uint64(len(data)), Sha256: declared, Offset: uint64(offset)}
	if err := st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Header{Header: hdr}}); err != nil {
		return nil, err
	}
	for rest := data[offset:]; len(rest) > 0; {
		n := min(len(rest), 1<<20)
		if err := st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Chunk{Chunk: rest[:n]}}); err != nil {
			break // the server answered early; CloseAndReceive says why
		}
		rest = rest[n:]
	}
	res, err := st.CloseAndReceive()
	if err != nil {
		return nil, err
	}
	return res.GetMedia(), nil
}

// uploadPrefix sends only the first n bytes of data and ends the stream.
func uploadPrefix(ctx context.Context, mc parleyv1connect.MediaServiceClient, id string, data []byte, n int) error {
	sum := sha256.Sum256(data)
	st, err := mc.Upload(ctx)
	if err != nil {
		return err
	}
	hdr := &parleyv1.UploadHeader{UploadId: id, FileName: "part.bin", SizeBytes: uint64(len(data)), Sha256: sum[:]}
	if err := st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Header{Header: hdr}}); err != nil {
		return err
	}
	for off := 0; off < n; off += 1 << 20 {
		if err := st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Chunk{Chunk: data[off:min(n, off+1<<20)]}}); err != nil {
			break
		}
	}
	_, err = st.CloseAndReceive()
	return err
}

func download(ctx context.Context, mc parleyv1connect.MediaServiceClient, id string, thumb bool) (*parleyv1.MediaInfo, []byte, error) {
	st, err := mc.Download(ctx, &parleyv1.DownloadRequest{MediaId: id, Thumbnail: thumb})
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	var info *parleyv1.MediaInfo
	var buf bytes.Buffer
	for {
		msg, err := st.Receive()
		if errors.Is(err, io.EOF) {
			return info, buf.Bytes(), nil
		}
		if err != nil {
			return nil, nil, err
		}
		if i := msg.GetInfo(); i != nil {
			info = i
		}
		buf.Write(msg.GetChunk())
	}
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	return b.Bytes()
}

func requireCode(t *testing.T, err error, code connect.Code, field string) {
	t.Helper()
	require.Error(t, err)
	require.Equal(t, code, connect.CodeOf(err), "err = %v", err)
	if field != "" {
		require.Contains(t, err.Error(), field)
	}
}

// blobFiles counts the stored blobs: content addressing keeps one per
// distinct content.
func blobFiles(t *testing.T, dataDir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(filepath.Join(dataDir, "media", "blobs"), func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	})
	if os.IsNotExist(err) {
		return 0
	}
	require.NoError(t, err)
	return n
}

func TestMediaRoundTripsAndRejections(t *testing.T) {
	t.Parallel()
	ts, dataDir := mediaServer(t)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	mc := mediaClient(hc, ts.url, alice)
	ctx := t.Context()

	t.Run("round_trips_up_to_the_limit", func(t *testing.T) {
		for i, size := range []int{1, 1 << 20, 1<<20 + 1, mediaLimit} {
			data := pattern(size)
			data[0] = byte(i) // distinct contents
			info, err := upload(ctx, mc, fmt.Sprintf("rt-%d", i), "blob.bin", data, 0, nil)
			require.NoError(t, err, "size %d", size)
			require.Equal(t, uint64(size), info.GetSizeBytes())
			require.Equal(t, "application/octet-stream", info.GetContentType())
			_, got, err := download(ctx, mc, info.GetMediaId(), false)
			require.NoError(t, err)
			require.Equal(t, data, got, "size %d", size)
		}
	})
	t.Run("identical_bytes_are_stored_once", func(t *testing.T) {
		before := blobFiles(t, dataDir)
		data := pattern(4096)
		a, err := upload(ctx, mc, "same-1", "a.bin", data, 0, nil)
		require.NoError(t, err)
		b, err := upload(ctx, mc, "same-2", "b.bin", data, 0, nil)
		require.NoError(t, err)
		require.NotEqual(t, a.GetMediaId(), b.GetMediaId())
		require.Equal(t, "b.bin", b.GetFileName())
		require.Equal(t, before+1, blobFiles(t, dataDir))
	})
	t.Run("image_gets_dimensions_and_a_thumbnail", func(t *testing.T) {
		info, err := upload(ctx, mc, "img", "cat.png", pngOf(t, 640, 400), 0, nil)
		require.NoError(t, err)
		require.Equal(t, "image/png", info.GetContentType())
		require.Equal(t, []uint32{640, 400}, []uint32{info.GetWidth(), info.GetHeight()})
		require.Equal(t, []uint32{320, 200}, []uint32{info.GetThumbnail().GetWidth(), info.GetThumbnail().GetHeight()})
		tinfo, thumb, err := download(ctx, mc, info.GetMediaId(), true)
		require.NoError(t, err)
		require.Equal(t, info.GetMediaId(), tinfo.GetMediaId())
		cfg, _, err := image.DecodeConfig(bytes.NewReader(thumb))
		require.NoError(t, err)
		require.Equal(t, 320, cfg.Width)
	})

	stored := blobFiles(t, dataDir)
	t.Run("wrong_checksum", func(t *testing.T) {
		wrong := sha256.Sum256([]byte("something else"))
		_, err := upload(ctx, mc, "bad-sum", "x.bin", pattern(1000), 0, wrong[:])
		requireCode(t, err, connect.CodeInvalidArgument, "sha256")
		_, err = mc.GetUpload(ctx, &parleyv1.GetUploadRequest{UploadId: "bad-sum"})
		requireCode(t, err, connect.CodeNotFound, "upload_id")
	})
	t.Run("over_the_limit", func(t *testing.T) {
		_, err := upload(ctx, mc, "big", "big.bin", pattern(mediaLimit+1), 0, nil)
		requireCode(t, err, connect.CodeInvalidArgument, "size_bytes")
	})
	t.Run("more_bytes_than_declared", func(t *testing.T) {
		data := pattern(2000)
		sum := sha256.Sum256(data[:1000])
		st, err := mc.Upload(ctx)
		require.NoError(t, err)
		require.NoError(t, st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Header{Header: &parleyv1.UploadHeader{UploadId: "long", SizeBytes: 1000, Sha256: sum[:]}}}))
		_ = st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Chunk{Chunk: data}})
		_, err = st.CloseAndReceive()
		requireCode(t, err, connect.CodeInvalidArgument, "chunk")
	})
	t.Run("undecodable_image", func(t *testing.T) {
		img := pngOf(t, 64, 64)
		_, err := upload(ctx, mc, "trunc-img", "broken.png", img[:len(img)/2], 0, nil)
		requireCode(t, err, connect.CodeInvalidArgument, "image")
	})
	t.Run("decompression_bomb", func(t *testing.T) {
		_, err := upload(ctx, mc, "bomb", "bomb.png", pngHeader(100000, 100000), 0, nil)
		requireCode(t, err, connect.CodeInvalidArgument, "image")
	})
	t.Run("chunk_before_header", func(t *testing.T) {
		st, err := mc.Upload(ctx)
		require.NoError(t, err)
		_ = st.Send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Chunk{Chunk: []byte("x")}})
		_, err = st.CloseAndReceive()
		requireCode(t, err, connect.CodeInvalidArgument, "header")
	})
	require.Equal(t, stored, blobFiles(t, dataDir), "a rejected upload stored something")

	t.Run("truncated_stream_resumes", func(t *testing.T) {
		data := pattern(2<<20 + 100)
		err := uploadPrefix(ctx, mc, "resume", data, 1<<20)
		requireCode(t, err, connect.CodeFailedPrecondition, "resume")
		require.Equal(t, stored, blobFiles(t, dataDir), "a partial upload became visible")
		st, err := mc.GetUpload(ctx, &parleyv1.GetUploadRequest{UploadId: "resume"})
		require.NoError(t, err)
		require.Equal(t, uint64(1<<20), st.GetReceivedBytes())
		require.Equal(t, uint64(len(data)), st.GetSizeBytes())

		_, err = upload(ctx, mc, "resume", "part.bin", data, 5, nil)
		requireCode(t, err, connect.CodeFailedPrecondition, "offset")
		info, err := upload(ctx, mc, "resume", "part.bin", data, int(st.GetReceivedBytes()), nil)
		require.NoError(t, err)
		_, got, err := download(ctx, mc, info.GetMediaId(), false)
		require.NoError(t, err)
		require.Equal(t, data, got)
	})
}

// pngHeader is a valid PNG signature and IHDR declaring w×h pixels, with
// no pixel data: what a decompression bomb looks like to a header reader.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := []byte{0, 0, 0, 13, 'I', 'H', 'D', 'R',
		byte(w >> 24), byte(w >> 16), byte(w >> 8), byte(w),
		byte(h >> 24), byte(h >> 16), byte(h >> 8), byte(h),
		8, 2, 0, 0, 0}
	b.Write(ihdr)
	b.Write(binary.BigEndian.AppendUint32(nil, crc32.ChecksumIEEE(ihdr[4:])))
	return b.Bytes()
}

func TestMediaAccessFollowsMessages(t *testing.T) {
	t.Parallel()
	ts, _ := mediaServer(t)
	hc := h2cClient()
	ctx := t.Context()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	eve := register(t, hc, ts.url, "eve")
	am, bm, em := mediaClient(hc, ts.url, alice), mediaClient(hc, ts.url, bob), mediaClient(hc, ts.url, eve)
	conv, err := alice.convs.CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_Username{Username: "bob"}})
	require.NoError(t, err)
	cid := conv.GetConversation().GetId()

	img, err := upload(ctx, am, "photo", "photo.png", pngOf(t, 100, 80), 0, nil)
	require.NoError(t, err)
	doc, err := upload(ctx, am, "doc", "notes.jpg", []byte("plain text pretending to be a photo\n"), 0, nil)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(doc.GetContentType(), "text/plain"), doc.GetContentType())

	// Before any message, only the uploader can read it.
	_, _, err = download(ctx, bm, img.GetMediaId(), false)
	requireCode(t, err, connect.CodeNotFound, "media_id")

	send := func(u *user, cmid string, c *parleyv1.Content) (*parleyv1.Message, error) {
		res, err := u.chat.SendMessage(ctx, &parleyv1.SendMessageRequest{ConversationId: cid, ClientMsgId: cmid, Content: c})
		return res.GetMessage(), err
	}
	imageOf := func(id string) *parleyv1.Content {
		return &parleyv1.Content{Body: &parleyv1.Content_Image{Image: &parleyv1.MediaRef{MediaId: id, Caption: "look", Width: 1, ContentType: "image/gif"}}}
	}

	// Disguised: text sent as an image is refused; as a file it is fine.
	_, err = send(alice, "disguised", imageOf(doc.GetMediaId()))
	requireCode(t, err, connect.CodeInvalidArgument, "not an image")
	// Bob cannot attach Alice's media he cannot see.
	_, err = send(bob, "steal", imageOf(img.GetMediaId()))
	requireCode(t, err, connect.CodeNotFound, "content.image.media_id")

	msg, err := send(alice, "photo-msg", imageOf(img.GetMediaId()))
	require.NoError(t, err)
	ref := msg.GetContent().GetImage()
	require.Equal(t, "image/png", ref.GetContentType(), "the server's facts replace the client's")
	require.Equal(t, []uint32{100, 80}, []uint32{ref.GetWidth(), ref.GetHeight()})
	require.Equal(t, "look", ref.GetCaption())

	_, got, err := download(ctx, bm, img.GetMediaId(), false)
	require.NoError(t, err, "a member reads media a message references")
	require.Equal(t, pngOf(t, 100, 80), got)
	_, _, err = download(ctx, em, img.GetMediaId(), false)
	requireCode(t, err, connect.CodeNotFound, "media_id")
	_, _, err = download(ctx, em, "no-such-media", false)
	requireCode(t, err, connect.CodeNotFound, "media_id")

	// Signed URLs work without a token; a tampered one does not.
	gm, err := bm.GetMedia(ctx, &parleyv1.GetMediaRequest{MediaId: img.GetMediaId()})
	require.NoError(t, err)
	status, body := get(t, hc, ts.url+gm.GetThumbnailUrl())
	require.Equal(t, http.StatusOK, status)
	_, format, err := image.DecodeConfig(strings.NewReader(body))
	require.NoError(t, err)
	require.Equal(t, "jpeg", format, "an opaque image's thumbnail is a JPEG")
	status, _ = get(t, hc, ts.url+strings.Replace(gm.GetUrl(), "sig=", "sig=A", 1))
	require.Equal(t, http.StatusForbidden, status)
	res, err := hc.Get(ts.url + gm.GetUrl())
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	require.Contains(t, res.Header.Get("Content-Disposition"), "photo.png")

	// Bob, now able to see it, may forward it.
	fwd, err := send(bob, "forward", imageOf(img.GetMediaId()))
	require.NoError(t, err)

	// Access lasts while some message references it: recalling one is not
	// enough, recalling both takes Bob's away.
	_, err = alice.chat.RecallMessage(ctx, &parleyv1.RecallMessageRequest{ConversationId: cid, Seq: msg.GetSeq()})
	require.NoError(t, err)
	_, _, err = download(ctx, bm, img.GetMediaId(), false)
	require.NoError(t, err)
	_, err = bob.chat.RecallMessage(ctx, &parleyv1.RecallMessageRequest{ConversationId: cid, Seq: fwd.GetSeq()})
	require.NoError(t, err)
	_, _, err = download(ctx, bm, img.GetMediaId(), false)
	requireCode(t, err, connect.CodeNotFound, "media_id")
	_, _, err = download(ctx, am, img.GetMediaId(), false)
	require.NoError(t, err, "the uploader keeps access")
}

// The sweeper deletes what no message references once the grace period
// is over, abandoned partial uploads too, and keeps what a message holds.
func TestMediaSweeperDeletesUnreferencedUploads(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	// Long enough for the kept upload's message to be sent first on a slow
	// machine; the sweeper then runs every 50 ms.
	ts := startServerEnv(t, map[string]string{"PARLEY_MEDIA_SWEEP_GRACE": "4s", "PARLEY_MEDIA_SWEEP_INTERVAL": "50ms"}, "-data-dir", dataDir)
	hc := h2cClient()
	ctx := t.Context()
	alice := register(t, hc, ts.url, "alice")
	register(t, hc, ts.url, "bob")
	am := mediaClient(hc, ts.url, alice)
	conv, err := alice.convs.CreateDirect(ctx, &parleyv1.CreateDirectRequest{Peer: &parleyv1.CreateDirectRequest_Username{Username: "bob"}})
	require.NoError(t, err)

	kept, err := upload(ctx, am, "kept", "kept.bin", pattern(3000), 0, nil)
	require.NoError(t, err)
	_, err = alice.chat.SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: conv.GetConversation().GetId(), ClientMsgId: "file",
		Content: &parleyv1.Content{Body: &parleyv1.Content_File{File: &parleyv1.MediaRef{MediaId: kept.GetMediaId()}}},
	})
	require.NoError(t, err)
	orphan, err := upload(ctx, am, "orphan", "orphan.png", pngOf(t, 50, 50), 0, nil)
	require.NoError(t, err)
	require.Equal(t, 3, blobFiles(t, dataDir), "kept, orphan and orphan's thumbnail")
	err = uploadPrefix(ctx, am, "abandoned", pattern(2<<20), 1<<20)
	requireCode(t, err, connect.CodeFailedPrecondition, "")

	require.Eventually(t, func() bool { return blobFiles(t, dataDir) == 1 }, 60*time.Second, 50*time.Millisecond,
		"the orphan's blobs were not swept")
	_, _, err = download(ctx, am, orphan.GetMediaId(), false)
	requireCode(t, err, connect.CodeNotFound, "media_id")
	_, got, err := download(ctx, am, kept.GetMediaId(), false)
	require.NoError(t, err)
	require.Equal(t, pattern(3000), got)
	require.Eventually(t, func() bool {
		_, err := am.GetUpload(ctx, &parleyv1.GetUploadRequest{UploadId: "abandoned"})
		return connect.CodeOf(err) == connect.CodeNotFound
	}, 60*time.Second, 50*time.Millisecond, "the abandoned upload was not swept")
}

// UploadPart, for browsers: one acknowledged chunk per call, resumable by
// the streaming Upload and the other way round.
func TestMediaUploadPartByPart(t *testing.T) {
	t.Parallel()
	ts, _ := mediaServer(t)
	hc := h2cClient()
	ctx := t.Context()
	mc := mediaClient(hc, ts.url, register(t, hc, ts.url, "alice"))
	data := pattern(2<<20 + 300)
	sum := sha256.Sum256(data)
	part := func(off, n int) (*parleyv1.UploadPartResponse, error) {
		return mc.UploadPart(ctx, &parleyv1.UploadPartRequest{
			Header: &parleyv1.UploadHeader{UploadId: "parts", FileName: "parts.bin", SizeBytes: uint64(len(data)), Sha256: sum[:], Offset: uint64(off)},
			Chunk:  data[off : off+n],
		})
	}
	res, err := part(0, 1<<20)
	require.NoError(t, err)
	require.Equal(t, uint64(1<<20), res.GetReceivedBytes())
	require.Nil(t, res.GetMedia())
	_, err = part(0, 1<<20)
	requireCode(t, err, connect.CodeFailedPrecondition, "offset")

	// GetUpload sees the parts' progress ...
	st, err := mc.GetUpload(ctx, &parleyv1.GetUploadRequest{UploadId: "parts"})
	require.NoError(t, err)
	require.Equal(t, uint64(1<<20), st.GetReceivedBytes())
	res, err = part(1<<20, 1<<20)
	require.NoError(t, err)
	require.Equal(t, uint64(2<<20), res.GetReceivedBytes())
	// ... and the last part completes the file.
	res, err = part(2<<20, 300)
	require.NoError(t, err)
	require.Equal(t, uint64(len(data)), res.GetReceivedBytes())
	require.NotEmpty(t, res.GetMedia().GetMediaId())
	_, got, err := download(ctx, mc, res.GetMedia().GetMediaId(), false)
	require.NoError(t, err)
	require.Equal(t, data, got)

	// The streaming Upload resumes an upload begun in parts.
	mixed := pattern(1<<20 + 10)
	mixed[0] = 'm'
	msum := sha256.Sum256(mixed)
	_, err = mc.UploadPart(ctx, &parleyv1.UploadPartRequest{
		Header: &parleyv1.UploadHeader{UploadId: "mixed", FileName: "mixed.bin", SizeBytes: uint64(len(mixed)), Sha256: msum[:]},
		Chunk:  mixed[:1000],
	})
	require.NoError(t, err)
	info, err := upload(ctx, mc, "mixed", "mixed.bin", mixed, 1000, nil)
	require.NoError(t, err)
	_, got, err = download(ctx, mc, info.GetMediaId(), false)
	require.NoError(t, err)
	require.Equal(t, mixed, got)

	// A wrong digest is found when the last part arrives.
	wrong := sha256.Sum256([]byte("no"))
	_, err = mc.UploadPart(ctx, &parleyv1.UploadPartRequest{
		Header: &parleyv1.UploadHeader{UploadId: "bad", SizeBytes: 3, Sha256: wrong[:]},
		Chunk:  []byte("abc"),
	})
	requireCode(t, err, connect.CodeInvalidArgument, "sha256")
	_, err = mc.UploadPart(ctx, &parleyv1.UploadPartRequest{Header: &parleyv1.UploadHeader{UploadId: "empty", SizeBytes: 3, Sha256: wrong[:]}})
	requireCode(t, err, connect.CodeInvalidArgument, "chunk")
}
