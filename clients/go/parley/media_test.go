package parley

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"connectrpc.com/connect/v2/connecthttp"
	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// fakeDownloadChunk keeps the fake's download chunks small, so a few KiB
// span several of them.
const fakeDownloadChunk = 1000

// fault makes one stream of the fake fail with code after it handled
// afterChunks chunks (received for Upload, sent for Download).
type fault struct {
	afterChunks int
	code        connect.Code
	msg         string
}

// fakeMedia is a scripted MediaService on a loopback h2c listener: uploads
// are staged in memory, and each stream takes the next fault, if any.
type fakeMedia struct {
	parleyv1connect.UnimplementedMediaServiceHandler
	url string

	mu              sync.Mutex
	uploadFaults    []fault
	downloadFaults  []fault
	staged          map[string][]byte // upload id → bytes received
	received        int               // chunk bytes received over all streams
	uploadOffsets   []uint64          // header.offset of every upload stream
	downloadOffsets []uint64
	media           map[string][]byte // media id → bytes
	corrupt         bool              // Download announces a wrong SHA-256
}

func newFakeMedia(t *testing.T) *fakeMedia {
	t.Helper()
	f := &fakeMedia{staged: make(map[string][]byte), media: make(map[string][]byte)}
	server := connect.NewServer()
	parleyv1connect.RegisterMediaServiceHandler(server, f)
	mux := http.NewServeMux()
	connecthttp.Mount(mux, server)
	srv := httptest.NewUnstartedServer(mux)
	protocols := new(http.Protocols)
	protocols.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = protocols
	srv.Start()
	t.Cleanup(srv.Close)
	f.url = srv.URL
	return f
}

// client returns a Client of the fake, which checks no tokens.
func (f *fakeMedia) client(t *testing.T) *Client {
	t.Helper()
	c, err := Resume(f.url, Credentials{UserID: "u1", DeviceID: "d1", AccessToken: "a", RefreshToken: "r"})
	require.NoError(t, err)
	return c
}

func (f *fakeMedia) nextFault(faults *[]fault) (fault, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(*faults) == 0 {
		return fault{}, false
	}
	ft := (*faults)[0]
	*faults = (*faults)[1:]
	return ft, true
}

func (f *fakeMedia) Upload(_ context.Context, stream parleyv1connect.MediaServiceUploadServerStream) (*parleyv1.UploadResponse, error) {
	ft, faulty := f.nextFault(&f.uploadFaults)
	first, err := stream.Receive()
	if err != nil {
		return nil, err
	}
	h := first.GetHeader()
	f.mu.Lock()
	f.uploadOffsets = append(f.uploadOffsets, h.GetOffset())
	held := uint64(len(f.staged[h.GetUploadId()]))
	f.mu.Unlock()
	if h.GetOffset() != held {
		return nil, connect.NewError(connect.CodeFailedPrecondition, fmt.Sprintf("header.offset: %d bytes are staged", held))
	}
	for chunks := 0; ; chunks++ {
		if faulty && chunks == ft.afterChunks {
			return nil, connect.NewError(ft.code, ft.msg)
		}
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		f.mu.Lock()
		f.staged[h.GetUploadId()] = append(f.staged[h.GetUploadId()], msg.GetChunk()...)
		f.received += len(msg.GetChunk())
		f.mu.Unlock()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	data := f.staged[h.GetUploadId()]
	sum := sha256.Sum256(data)
	if uint64(len(data)) != h.GetSizeBytes() || !bytes.Equal(sum[:], h.GetSha256()) {
		return nil, connect.NewError(connect.CodeInvalidArgument, "header.sha256: mismatch")
	}
	delete(f.staged, h.GetUploadId())
	id := fmt.Sprintf("m%d", len(f.media)+1)
	f.media[id] = data
	return &parleyv1.UploadResponse{Media: &parleyv1.MediaInfo{MediaId: id, FileName: h.GetFileName(), SizeBytes: uint64(len(data)), Sha256: sum[:]}}, nil
}

func (f *fakeMedia) GetUpload(_ context.Context, req *parleyv1.GetUploadRequest) (*parleyv1.GetUploadResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.staged[req.GetUploadId()]
	if !ok {
		return nil, connect.NewError(connect.CodeNotFound, "upload_id: no unfinished upload with this id")
	}
	return &parleyv1.GetUploadResponse{ReceivedBytes: uint64(len(data))}, nil
}

func (f *fakeMedia) Download(_ context.Context, req *parleyv1.DownloadRequest, stream parleyv1connect.MediaServiceDownloadServerStream) error {
	ft, faulty := f.nextFault(&f.downloadFaults)
	f.mu.Lock()
	f.downloadOffsets = append(f.downloadOffsets, req.GetOffset())
	data, ok := f.media[req.GetMediaId()]
	corrupt := f.corrupt
	f.mu.Unlock()
	if !ok {
		return connect.NewError(connect.CodeNotFound, "media_id: no such media")
	}
	sum := sha256.Sum256(data)
	if corrupt {
		sum[0]++
	}
	info := &parleyv1.MediaInfo{MediaId: req.GetMediaId(), SizeBytes: uint64(len(data)), Sha256: sum[:]}
	if req.GetThumbnail() {
		info.Thumbnail = &parleyv1.Thumbnail{SizeBytes: uint64(len(data))}
	}
	if err := stream.Send(&parleyv1.DownloadResponse{Part: &parleyv1.DownloadResponse_Info{Info: info}}); err != nil {
		return err
	}
	rest := data[req.GetOffset():]
	for chunks := 0; len(rest) > 0; chunks++ {
		if faulty && chunks == ft.afterChunks {
			return connect.NewError(ft.code, ft.msg)
		}
		n := min(fakeDownloadChunk, len(rest))
		if err := stream.Send(&parleyv1.DownloadResponse{Part: &parleyv1.DownloadResponse_Chunk{Chunk: rest[:n]}}); err != nil {
			return err
		}
		rest = rest[n:]
	}
	return nil
}

// fastRetry keeps the backoff waits of these tests short.
var fastRetry = WithTransferBackoff(time.Millisecond, time.Millisecond)

func TestUploadRetries(t *testing.T) {
	t.Parallel()
	const mib = 1 << 20
	tests := []struct {
		name        string
		size        int
		faults      []fault
		opts        []UploadOption
		wantCode    connect.Code // 0: success
		wantOffsets []uint64
	}{
		{name: "no_fault", size: 3*mib + 7, wantOffsets: []uint64{0}},
		{name: "unavailable_resumes", size: 3*mib + 7,
			faults:      []fault{{afterChunks: 2, code: connect.CodeUnavailable}},
			wantOffsets: []uint64{0, 2 * mib}},
		{name: "aborted_in_progress_resumes", size: 2 * mib,
			faults:      []fault{{afterChunks: 1, code: connect.CodeAborted, msg: "header.upload_id: this upload is already in progress on another stream"}},
			wantOffsets: []uint64{0, mib}},
		{name: "deadline_exceeded_resumes", size: 10,
			faults:      []fault{{afterChunks: 0, code: connect.CodeDeadlineExceeded}, {afterChunks: 0, code: connect.CodeUnavailable}},
			wantOffsets: []uint64{0, 0, 0}},
		{name: "invalid_argument_not_retried", size: 10,
			faults:   []fault{{afterChunks: 0, code: connect.CodeInvalidArgument, msg: "image: no"}},
			wantCode: connect.CodeInvalidArgument, wantOffsets: []uint64{0}},
		{name: "spec_mismatch_not_retried", size: 10,
			faults:   []fault{{afterChunks: 0, code: connect.CodeFailedPrecondition, msg: "header: does not match"}},
			wantCode: connect.CodeFailedPrecondition, wantOffsets: []uint64{0}},
		{name: "attempts_bounded", size: 10,
			faults: []fault{
				{afterChunks: 0, code: connect.CodeUnavailable},
				{afterChunks: 0, code: connect.CodeUnavailable},
				{afterChunks: 0, code: connect.CodeUnavailable},
			},
			opts:     []UploadOption{WithAttempts(3)},
			wantCode: connect.CodeUnavailable, wantOffsets: []uint64{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeMedia(t)
			f.uploadFaults = tt.faults
			data := pattern(tt.size)
			opts := append([]UploadOption{fastRetry}, tt.opts...)
			info, err := f.client(t).Upload(t.Context(), bytes.NewReader(data), int64(len(data)), "x.bin", opts...)
			f.mu.Lock()
			defer f.mu.Unlock()
			require.Equal(t, tt.wantOffsets, f.uploadOffsets)
			if tt.wantCode != 0 {
				require.Equal(t, tt.wantCode, connect.CodeOf(err), "%v", err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, data, f.media[info.GetMediaId()])
			require.Equal(t, len(data), f.received, "every byte is sent once")
		})
	}
}

func TestUploadOffsetMismatchAsksAgain(t *testing.T) {
	t.Parallel()
	f := newFakeMedia(t)
	data := pattern(5000)
	// Another device of the user staged 1000 bytes under the same id.
	f.staged["shared"] = data[:1000]
	f.uploadFaults = []fault{{afterChunks: 0, code: connect.CodeUnavailable}}
	info, err := f.client(t).Upload(t.Context(), bytes.NewReader(data), int64(len(data)), "x", WithUploadID("shared"), fastRetry)
	require.NoError(t, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, data, f.media[info.GetMediaId()])
	require.Equal(t, []uint64{1000, 1000}, f.uploadOffsets)
}

func TestUploadReadErrorThenResume(t *testing.T) {
	t.Parallel()
	f := newFakeMedia(t)
	data := pattern(3<<20 + 7)
	c := f.client(t)
	errDisk := errors.New("disk on fire")
	r := &failingReaderAt{r: bytes.NewReader(data), failAt: 2 << 20, skip: 1, err: errDisk}
	_, err := c.Upload(t.Context(), r, int64(len(data)), "x", WithUploadID("u-1"), fastRetry)
	require.ErrorIs(t, err, errDisk)
	f.mu.Lock()
	require.Equal(t, []uint64{0}, f.uploadOffsets, "a read error is not retried")
	f.mu.Unlock()

	// The server holds what reached it before the stream was abandoned.
	held, err := c.Media().GetUpload(t.Context(), &parleyv1.GetUploadRequest{UploadId: "u-1"})
	require.NoError(t, err)
	require.LessOrEqual(t, held.GetReceivedBytes(), uint64(2<<20))

	info, err := c.Upload(t.Context(), r, int64(len(data)), "x", WithUploadID("u-1"), fastRetry)
	require.NoError(t, err)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, data, f.media[info.GetMediaId()])
	require.Equal(t, []uint64{0, held.GetReceivedBytes()}, f.uploadOffsets)
	require.Equal(t, len(data), f.received, "every byte is stored once")
}

func TestUploadShortReader(t *testing.T) {
	t.Parallel()
	f := newFakeMedia(t)
	_, err := f.client(t).Upload(t.Context(), bytes.NewReader(pattern(10)), 11, "x")
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Empty(t, f.uploadOffsets, "nothing is sent for a file shorter than its size")
}

func TestUploadContextCanceledDuringBackoff(t *testing.T) {
	t.Parallel()
	f := newFakeMedia(t)
	f.uploadFaults = []fault{{afterChunks: 0, code: connect.CodeUnavailable}}
	ctx, cancel := context.WithCancel(t.Context())
	// The first attempt's failure is the cue: cancel while Upload waits
	// out an hour of backoff.
	hook := connect.ClientInterceptor(func(next connect.ClientFunc) connect.ClientFunc {
		return func(ctx context.Context, spec connect.Spec) (connect.ClientStream, error) {
			stream, err := next(ctx, spec)
			return cancelOnError{ClientStream: stream, cancel: cancel}, err
		}
	})
	c, err := Resume(f.url, Credentials{AccessToken: "a", RefreshToken: "r"}, WithInterceptors(hook))
	require.NoError(t, err)
	_, err = c.Upload(ctx, bytes.NewReader(pattern(10)), 10, "x", WithTransferBackoff(time.Hour, time.Hour))
	require.ErrorIs(t, err, context.Canceled)
}

func TestDownloadRetries(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		faults      []fault
		opts        []DownloadOption
		corrupt     bool
		wantCode    connect.Code
		wantErr     error
		wantOffsets []uint64
	}{
		{name: "no_fault", wantOffsets: []uint64{0}},
		{name: "unavailable_resumes", faults: []fault{{afterChunks: 3, code: connect.CodeUnavailable}},
			wantOffsets: []uint64{0, 3 * fakeDownloadChunk}},
		{name: "twice", faults: []fault{{afterChunks: 1, code: connect.CodeUnavailable}, {afterChunks: 2, code: connect.CodeDeadlineExceeded}},
			wantOffsets: []uint64{0, fakeDownloadChunk, 3 * fakeDownloadChunk}},
		{name: "internal_not_retried", faults: []fault{{afterChunks: 1, code: connect.CodeInternal}},
			wantCode: connect.CodeInternal, wantOffsets: []uint64{0}},
		{name: "attempts_bounded", faults: []fault{{code: connect.CodeUnavailable}, {code: connect.CodeUnavailable}},
			opts: []DownloadOption{WithAttempts(2)}, wantCode: connect.CodeUnavailable, wantOffsets: []uint64{0, 0}},
		{name: "checksum_mismatch", corrupt: true, wantErr: ErrChecksum, wantOffsets: []uint64{0}},
		{name: "thumbnail_has_no_checksum", corrupt: true, opts: []DownloadOption{WithThumbnail()}, wantOffsets: []uint64{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFakeMedia(t)
			data := pattern(5*fakeDownloadChunk + 17)
			f.media["m"] = data
			f.downloadFaults = tt.faults
			f.corrupt = tt.corrupt
			var buf bytes.Buffer
			info, err := f.client(t).Download(t.Context(), "m", &buf, append([]DownloadOption{fastRetry}, tt.opts...)...)
			f.mu.Lock()
			require.Equal(t, tt.wantOffsets, f.downloadOffsets)
			f.mu.Unlock()
			switch {
			case tt.wantCode != 0:
				require.Equal(t, tt.wantCode, connect.CodeOf(err), "%v", err)
			case tt.wantErr != nil:
				require.ErrorIs(t, err, tt.wantErr)
			default:
				require.NoError(t, err)
				require.Equal(t, "m", info.GetMediaId())
				require.Equal(t, data, buf.Bytes(), "every byte once, in order")
			}
		})
	}
}

func TestDownloadWriterErrorNotRetried(t *testing.T) {
	t.Parallel()
	f := newFakeMedia(t)
	f.media["m"] = pattern(3 * fakeDownloadChunk)
	errFull := errors.New("disk full")
	_, err := f.client(t).Download(t.Context(), "m", failingWriter{err: errFull}, fastRetry)
	require.ErrorIs(t, err, errFull)
	f.mu.Lock()
	defer f.mu.Unlock()
	require.Equal(t, []uint64{0}, f.downloadOffsets)
}

func TestDownloadNotFound(t *testing.T) {
	t.Parallel()
	f := newFakeMedia(t)
	_, err := f.client(t).Download(t.Context(), "nope", io.Discard, fastRetry)
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err))
}

func TestIsTransient(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "unavailable", err: connect.NewError(connect.CodeUnavailable, "x"), want: true},
		{name: "deadline", err: connect.NewError(connect.CodeDeadlineExceeded, "x"), want: true},
		{name: "aborted", err: connect.NewError(connect.CodeAborted, "in progress"), want: true},
		{name: "offset_mismatch", err: connect.NewError(connect.CodeFailedPrecondition, "header.offset: 5 staged"), want: true},
		{name: "spec_mismatch", err: connect.NewError(connect.CodeFailedPrecondition, "header: differs"), want: false},
		{name: "invalid_argument", err: connect.NewError(connect.CodeInvalidArgument, "x"), want: false},
		{name: "not_found", err: connect.NewError(connect.CodeNotFound, "x"), want: false},
		{name: "unexpected_eof", err: fmt.Errorf("read: %w", io.ErrUnexpectedEOF), want: true},
		{name: "local_unexpected_eof", err: localError{io.ErrUnexpectedEOF}, want: false},
		{name: "plain", err: errors.New("x"), want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, isTransient(tt.err))
		})
	}
}

func TestContentHelpers(t *testing.T) {
	t.Parallel()
	img := Image("m1", "look")
	require.Equal(t, "m1", img.GetImage().GetMediaId())
	require.Equal(t, "look", img.GetImage().GetCaption())
	require.Nil(t, img.GetFile())
	file := File("m2", "")
	require.Equal(t, "m2", file.GetFile().GetMediaId())
	require.Nil(t, file.GetImage())
}

// pattern returns n bytes that differ from chunk to chunk, so a misplaced
// chunk changes the digest.
func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>11)
	}
	return b
}

// failingReaderAt fails one read that reaches byte failAt, after letting
// skip such reads pass (Upload's hashing pass is the first).
type failingReaderAt struct {
	r      io.ReaderAt
	failAt int64
	skip   int
	err    error

	mu     sync.Mutex
	failed bool
}

func (r *failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	fail := false
	if !r.failed && off <= r.failAt && r.failAt < off+int64(len(p)) {
		if r.skip > 0 {
			r.skip--
		} else {
			fail, r.failed = true, true
		}
	}
	r.mu.Unlock()
	if fail {
		return 0, r.err
	}
	return r.r.ReadAt(p, off)
}

// cancelOnError cancels a context when the stream fails.
type cancelOnError struct {
	connect.ClientStream
	cancel context.CancelFunc
}

func (s cancelOnError) Receive(msg any) error {
	err := s.ClientStream.Receive(msg)
	if err != nil {
		s.cancel()
	}
	return err
}

type failingWriter struct{ err error }

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }
