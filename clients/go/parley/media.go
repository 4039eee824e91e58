package parley

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"connectrpc.com/connect/v2"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
)

// uploadChunkSize is the largest chunk MediaService.Upload accepts.
const uploadChunkSize = 1 << 20

// ErrChecksum reports that a downloaded original does not match the SHA-256
// the server recorded for it. The bytes already written to the caller's
// writer must be discarded.
var ErrChecksum = errors.New("parley: downloaded bytes do not match the media's SHA-256")

// Media returns the MediaService client, authenticated as this device, for
// what [Client.Upload] and [Client.Download] do not cover (GetMedia's signed
// URLs, GetUpload). Errors are the server's Connect errors (connect.CodeOf).
func (c *Client) Media() parleyv1connect.MediaServiceClient {
	return c.media
}

// Upload stores size bytes read from r as media named fileName (shown to
// recipients; the server keeps at most 255 bytes of it) and returns what the
// server made of it: the media id to put in [Image] or [File], the detected
// content type and, for an image, its pixel size and thumbnail.
//
// Upload reads r twice, never holding more than one 1 MiB chunk: once to
// compute the SHA-256 the server verifies, then to send the chunks. r must
// not change meanwhile (the server then refuses the upload with
// InvalidArgument). When the stream fails transiently (Unavailable,
// DeadlineExceeded, Aborted, a broken connection, or an upload that is still
// settling on the server) Upload asks the server how many bytes it holds
// and sends the rest on a new stream with the same upload id, waiting with
// exponential backoff in between, up to [WithAttempts] streams. Other
// failures are returned at once, wrapping the server's Connect error:
// InvalidArgument for an empty file, a file over the server's limit or an
// image that does not decode; FailedPrecondition when [WithUploadID] names
// an upload of different bytes. An error reading r is returned as it is
// (wrapped), and is not retried: resume later with [WithUploadID].
//
// Upload is safe for concurrent use; each call is a separate upload.
func (c *Client) Upload(ctx context.Context, r io.ReaderAt, size int64, fileName string, opts ...UploadOption) (*parleyv1.MediaInfo, error) {
	cfg := newUploadConfig(opts)
	if size < 0 {
		return nil, fmt.Errorf("parley: upload %q: negative size %d", fileName, size)
	}
	sum, err := hashSection(ctx, r, size)
	if err != nil {
		return nil, fmt.Errorf("parley: upload %q: %w", fileName, err)
	}
	header := &parleyv1.UploadHeader{
		UploadId:  cfg.uploadID,
		FileName:  fileName,
		SizeBytes: uint64(size),
		Sha256:    sum,
	}
	mc := c.Media()
	if header.UploadId == "" {
		header.UploadId = rand.Text()
	} else if header.Offset, err = c.uploadOffset(ctx, mc, header.UploadId); err != nil {
		return nil, fmt.Errorf("parley: upload %q: %w", fileName, err)
	}
	for attempt := 1; ; attempt++ {
		token := c.Credentials().AccessToken
		info, err := c.uploadOnce(ctx, mc, r, header)
		if err == nil {
			return info, nil
		}
		if err = c.retryable(ctx, err, token, attempt, cfg); err != nil {
			return nil, fmt.Errorf("parley: upload %q: %w", fileName, err)
		}
		// The server may hold more (or, after an offset mismatch, less)
		// than this stream sent: resume from what it says.
		if header.Offset, err = c.uploadOffset(ctx, mc, header.UploadId); err != nil {
			if err = c.retryable(ctx, err, token, attempt, cfg); err != nil {
				return nil, fmt.Errorf("parley: upload %q: %w", fileName, err)
			}
		}
		c.logger.DebugContext(ctx, "resuming upload", "attempt", attempt+1)
	}
}

// UploadFile uploads the regular file at path under its base name; see
// [Client.Upload].
func (c *Client) UploadFile(ctx context.Context, path string, opts ...UploadOption) (*parleyv1.MediaInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("parley: upload: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("parley: upload: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("parley: upload: %s is not a regular file", path)
	}
	return c.Upload(ctx, f, st.Size(), filepath.Base(path), opts...)
}

// Download writes the bytes of media mediaID (or, [WithThumbnail], of its
// thumbnail) to w and returns the media's description. Only the uploader
// and members of a conversation where the media was sent may read it;
// everyone else gets NotFound, as for an unknown id.
//
// When the stream fails transiently Download opens a new one that starts
// after the bytes already written, up to [WithAttempts] streams, so w sees
// every byte exactly once, in order. An error from w ends the download and
// is returned (wrapped). For the original, Download checks the SHA-256 of
// everything written against the server's and returns an error wrapping
// [ErrChecksum] (and the MediaInfo) when they differ; thumbnails carry no
// digest. Download is safe for concurrent use with separate writers.
func (c *Client) Download(ctx context.Context, mediaID string, w io.Writer, opts ...DownloadOption) (*parleyv1.MediaInfo, error) {
	cfg := newDownloadConfig(opts)
	d := &download{mediaID: mediaID, thumbnail: cfg.thumbnail, w: w}
	if !cfg.thumbnail {
		d.hash = sha256.New()
	}
	mc := c.Media()
	for attempt := 1; ; attempt++ {
		token := c.Credentials().AccessToken
		err := d.once(ctx, mc)
		if err == nil {
			break
		}
		if err = c.retryable(ctx, err, token, attempt, cfg); err != nil {
			return nil, fmt.Errorf("parley: download %s: %w", mediaID, err)
		}
		c.logger.DebugContext(ctx, "resuming download", "attempt", attempt+1)
	}
	if d.hash != nil && !bytes.Equal(d.hash.Sum(nil), d.info.GetSha256()) {
		return d.info, fmt.Errorf("parley: download %s: %w", mediaID, ErrChecksum)
	}
	return d.info, nil
}

// Image returns content holding an image message for uploaded media. The
// server fills in the content type, file name, size and pixel size from the
// upload; it answers NotFound when the sender can't read mediaID and
// InvalidArgument when the media is not an image (send it with [File]).
func Image(mediaID, caption string) *parleyv1.Content {
	return &parleyv1.Content{Body: &parleyv1.Content_Image{Image: &parleyv1.MediaRef{MediaId: mediaID, Caption: caption}}}
}

// File returns content holding a file message for uploaded media of any
// type. The server fills in the media's details, as for [Image].
func File(mediaID, caption string) *parleyv1.Content {
	return &parleyv1.Content{Body: &parleyv1.Content_File{File: &parleyv1.MediaRef{MediaId: mediaID, Caption: caption}}}
}

// uploadOnce sends header and the bytes from header.Offset on one stream.
func (c *Client) uploadOnce(ctx context.Context, mc parleyv1connect.MediaServiceClient, r io.ReaderAt, header *parleyv1.UploadHeader) (*parleyv1.MediaInfo, error) {
	// Cancelling is the only way to abandon a client stream mid-way (on a
	// read error); the server keeps what it received.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := mc.Upload(ctx)
	if err != nil {
		return nil, err
	}
	send := func(req *parleyv1.UploadRequest) error {
		err := stream.Send(req)
		if errors.Is(err, io.EOF) {
			// The server ended the stream; its error comes with the response.
			_, err = stream.CloseAndReceive()
			if err == nil {
				err = errors.New("upload stream ended early")
			}
		}
		return err
	}
	if err := send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Header{Header: header}}); err != nil {
		return nil, err
	}
	size := int64(header.GetSizeBytes())
	buf := make([]byte, min(uploadChunkSize, size))
	for off := int64(header.GetOffset()); off < size; {
		chunk := buf[:min(int64(len(buf)), size-off)]
		if err := readFull(r, chunk, off); err != nil {
			cancel()
			_, _ = stream.CloseAndReceive()
			return nil, err
		}
		if err := send(&parleyv1.UploadRequest{Part: &parleyv1.UploadRequest_Chunk{Chunk: chunk}}); err != nil {
			return nil, err
		}
		off += int64(len(chunk))
	}
	res, err := stream.CloseAndReceive()
	if err != nil {
		return nil, err
	}
	return res.GetMedia(), nil
}

// uploadOffset asks how many bytes of upload id the server holds: where the
// next stream starts. None (NotFound) means 0: the upload never began, or it
// completed and its answer was lost, and sending it again is harmless
// (identical bytes are stored once).
func (c *Client) uploadOffset(ctx context.Context, mc parleyv1connect.MediaServiceClient, id string) (uint64, error) {
	res, err := mc.GetUpload(ctx, &parleyv1.GetUploadRequest{UploadId: id})
	if connect.CodeOf(err) == connect.CodeNotFound {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return res.GetReceivedBytes(), nil
}

// retryable returns nil when attempt failed with err transiently and another
// attempt may start (after the backoff wait, which it does), and otherwise
// the error to return. token is the access token the attempt used: an
// expired one is refreshed, as the SDK does for unary calls.
func (c *Client) retryable(ctx context.Context, err error, token string, attempt int, cfg *transferConfig) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	wait := true
	switch {
	case isAccessExpired(err):
		if rerr := c.tokens.refresh(ctx, token); rerr != nil {
			return rerr
		}
		wait = false
	case !isTransient(err):
		return err
	}
	if attempt >= cfg.attempts {
		return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
	}
	if !wait {
		return nil
	}
	t := time.NewTimer(cfg.backoff.delay(attempt-1, jitter))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// download is one Download call's progress across its streams.
type download struct {
	mediaID   string
	thumbnail bool
	w         io.Writer
	hash      hash.Hash // of the original's bytes; nil for a thumbnail
	info      *parleyv1.MediaInfo
	written   int64
}

// once streams from d.written to the end. Errors of d.w come back as
// localError, so they are never retried.
func (d *download) once(ctx context.Context, mc parleyv1connect.MediaServiceClient) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := mc.Download(ctx, &parleyv1.DownloadRequest{MediaId: d.mediaID, Thumbnail: d.thumbnail, Offset: uint64(d.written)})
	if err != nil {
		return err
	}
	defer stream.Close()
	first, err := stream.Receive()
	if err != nil {
		return unexpectedEOF(err)
	}
	info := first.GetInfo()
	if info == nil {
		return errors.New("the server sent data before the media's description")
	}
	if d.info != nil && !bytes.Equal(d.info.GetSha256(), info.GetSha256()) {
		return errors.New("the media changed while downloading")
	}
	d.info = info
	want := int64(info.GetSizeBytes())
	if d.thumbnail {
		want = int64(info.GetThumbnail().GetSizeBytes())
	}
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			if d.written < want {
				return fmt.Errorf("stream ended at byte %d of %d: %w", d.written, want, io.ErrUnexpectedEOF)
			}
			return nil
		}
		if err != nil {
			return err
		}
		chunk := msg.GetChunk()
		if d.written+int64(len(chunk)) > want {
			return fmt.Errorf("the server sent more than the %d bytes it announced", want)
		}
		if _, err := d.w.Write(chunk); err != nil {
			return localError{err}
		}
		if d.hash != nil {
			d.hash.Write(chunk)
		}
		d.written += int64(len(chunk))
	}
}

// localError is a failure of the caller's reader or writer: retrying the
// stream would not help, whatever it wraps (EPIPE from a pipe, say).
type localError struct{ err error }

func (e localError) Error() string { return e.err.Error() }
func (e localError) Unwrap() error { return e.err }

// isTransient reports whether a stream that failed with err may succeed on
// a new one: the server or the network went away (Unavailable, a broken
// connection), took too long (DeadlineExceeded), the upload is still held
// by the previous stream (Aborted), or the client's offset was stale
// (FailedPrecondition on header.offset; the caller asks again).
func isTransient(err error) bool {
	if _, ok := errors.AsType[localError](err); ok {
		return false
	}
	switch connect.CodeOf(err) {
	case connect.CodeUnavailable, connect.CodeDeadlineExceeded, connect.CodeAborted:
		return true
	case connect.CodeFailedPrecondition:
		cerr, ok := errors.AsType[*connect.Error](err)
		return ok && strings.HasPrefix(cerr.Message(), "header.offset")
	case connect.CodeCanceled:
		// The caller's context is live (checked first), so the peer or a
		// proxy reset the stream.
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, net.ErrClosed) ||
		isNetError(err)
}

func isNetError(err error) bool {
	_, ok := errors.AsType[net.Error](err)
	return ok
}

// unexpectedEOF turns an end of stream before the MediaInfo into a broken
// stream.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// hashSection returns the SHA-256 of r's first size bytes, one chunk at a
// time; fewer bytes is an error.
func hashSection(ctx context.Context, r io.ReaderAt, size int64) ([]byte, error) {
	h := sha256.New()
	buf := make([]byte, min(uploadChunkSize, size))
	sr := io.NewSectionReader(r, 0, size)
	for read := int64(0); read < size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n, err := io.ReadFull(sr, buf[:min(int64(len(buf)), size-read)])
		h.Write(buf[:n])
		read += int64(n)
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return nil, localError{fmt.Errorf("read at byte %d of %d: %w", read, size, err)}
		}
	}
	return h.Sum(nil), nil
}

// readFull reads len(p) bytes at off. ReaderAt may report io.EOF along with
// the last bytes; only a short read is an error.
func readFull(r io.ReaderAt, p []byte, off int64) error {
	n, err := r.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return localError{fmt.Errorf("read at byte %d: %w", off, err)}
}
