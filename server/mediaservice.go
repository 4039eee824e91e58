package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"os"
	"strconv"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/gen/parley/v1/parleyv1connect"
	"github.com/parley-im/parley/server/media"
	"github.com/parley-im/parley/storage"
)

// MediaConfig bounds uploads and the URLs that serve them.
type MediaConfig struct {
	// MaxSize is the largest upload, in bytes. Default 100 MiB.
	MaxSize int64 `yaml:"max_size" env:"MAX_SIZE"`
	// MaxPixels bounds an image's width × height, checked from its header
	// before it is decoded (decompression bombs). Default 50 million.
	MaxPixels int64 `yaml:"max_pixels" env:"MAX_PIXELS"`
	// URLTTL is how long a signed download URL works. Access is checked
	// when the URL is made, so a recall takes this long at most to cut off
	// a URL handed out before it. Default 5m.
	URLTTL time.Duration `yaml:"url_ttl" env:"URL_TTL"`
	// SweepGrace is how long an upload no message references is kept
	// before the sweeper deletes it. Default 24h.
	SweepGrace time.Duration `yaml:"sweep_grace" env:"SWEEP_GRACE"`
	// SweepInterval is how often the sweeper runs. Default 10m.
	SweepInterval time.Duration `yaml:"sweep_interval" env:"SWEEP_INTERVAL"`
}

// DefaultMediaConfig is what parleyd runs with unless configured.
func DefaultMediaConfig() MediaConfig {
	l := media.DefaultLimits()
	return MediaConfig{
		MaxSize:       l.MaxSize,
		MaxPixels:     l.MaxPixels,
		URLTTL:        5 * time.Minute,
		SweepGrace:    24 * time.Hour,
		SweepInterval: 10 * time.Minute,
	}
}

// Validate reports the first setting that cannot work.
func (c MediaConfig) Validate() error {
	switch {
	case c.MaxSize <= 0:
		return errors.New("media.max_size must be positive")
	case c.MaxPixels <= 0:
		return errors.New("media.max_pixels must be positive")
	case c.URLTTL <= 0:
		return errors.New("media.url_ttl must be positive")
	case c.SweepGrace <= 0:
		return errors.New("media.sweep_grace must be positive")
	case c.SweepInterval <= 0:
		return errors.New("media.sweep_interval must be positive")
	}
	return nil
}

// Limits are the bounds media.Staging enforces.
func (c MediaConfig) Limits() media.Limits {
	return media.Limits{MaxSize: c.MaxSize, MaxPixels: c.MaxPixels}
}

// MediaStore is what the media service needs from the system of record
// (storage.MediaStore).
type MediaStore interface {
	CreateMedia(ctx context.Context, m storage.Media) error
	TouchBlobs(ctx context.Context, keys []string, now time.Time) error
	GetMedia(ctx context.Context, id string) (storage.Media, error)
	CanReadMedia(ctx context.Context, userID, mediaID string) (bool, error)
	SweepMedia(ctx context.Context, olderThan time.Time, limit int) ([]string, error)
}

// MediaDeps are what the media service is built from. Staging is this
// process's own directory of uploads in progress (resumes must come back
// to the same process); Blobs and Store are shared by the cluster; URLKey
// signs download URLs and must be the same on every process.
type MediaDeps struct {
	Config  MediaConfig
	Store   MediaStore
	Blobs   storage.BlobStore
	Staging *media.Staging
	URLKey  []byte
}

// maxConcurrentPuts bounds the blob writes in progress on one process: an
// S3 write holds one part (16 MiB by default) in memory, so this bounds
// what uploads completing at once can take. Others wait their turn; their
// bytes are already staged on disk.
const maxConcurrentPuts = 4

// downloadChunk is the size of Download's chunks: big enough to keep the
// per-message overhead small, far below clients' 4 MiB message limit.
const downloadChunk = 256 << 10

var errMediaNotFound = connect.NewError(connect.CodeNotFound, "media_id: no such media")

type mediaService struct {
	parleyv1connect.UnimplementedMediaServiceHandler
	s       *Server
	cfg     MediaConfig
	store   MediaStore
	blobs   storage.BlobStore
	staging *media.Staging
	signer  *media.Signer
	puts    chan struct{} // a slot per blob write in progress
}

func newMediaService(s *Server, d *MediaDeps) (*mediaService, error) {
	if err := d.Config.Validate(); err != nil {
		return nil, err
	}
	if d.Store == nil || d.Blobs == nil || d.Staging == nil || len(d.URLKey) == 0 {
		return nil, errors.New("media: store, blobs, staging and URL key are all required")
	}
	return &mediaService{
		s: s, cfg: d.Config, store: d.Store, blobs: d.Blobs, staging: d.Staging,
		signer: media.NewSigner(d.URLKey), puts: make(chan struct{}, maxConcurrentPuts),
	}, nil
}

// Upload stages the stream's bytes, and only once they are complete and
// match the declared size and SHA-256 inspects them, stores them (once
// per content) and records the media. A stream that breaks leaves its
// bytes staged for a resume and nothing visible.
func (m *mediaService) Upload(ctx context.Context, stream parleyv1connect.MediaServiceUploadServerStream) (*parleyv1.UploadResponse, error) {
	id := mustIdentity(ctx)
	first, err := stream.Receive()
	if err != nil {
		return nil, err
	}
	h := first.GetHeader()
	if h == nil {
		return nil, connect.NewError(connect.CodeInvalidArgument, "header: the first message of an upload must be its header")
	}
	part, err := m.begin(ctx, id.UserID, h)
	if err != nil {
		return nil, err
	}
	for {
		msg, err := stream.Receive()
		if errors.Is(err, io.EOF) {
			break
		}
		if err == nil && msg.GetChunk() == nil {
			err = connect.NewError(connect.CodeInvalidArgument, "chunk: only the first message of an upload is a header")
		}
		if err == nil {
			_, err = part.Write(msg.GetChunk())
		}
		if err != nil {
			// What arrived intact stays staged: the client resumes from it.
			if cerr := part.Close(); cerr != nil {
				m.s.logger.Warn("keep partial upload", "user_id", id.UserID, "err", cerr)
			}
			return nil, m.uploadError(ctx, err)
		}
	}
	rec, err := m.complete(ctx, part)
	if err != nil {
		return nil, err
	}
	return &parleyv1.UploadResponse{Media: mediaInfo(rec)}, nil
}

// UploadPart is one chunk of an upload per call: staged and acknowledged,
// and the call that completes the file stores it.
func (m *mediaService) UploadPart(ctx context.Context, req *parleyv1.UploadPartRequest) (*parleyv1.UploadPartResponse, error) {
	id := mustIdentity(ctx)
	part, err := m.begin(ctx, id.UserID, req.GetHeader())
	if err != nil {
		return nil, err
	}
	if _, err := part.Write(req.GetChunk()); err != nil {
		if cerr := part.Close(); cerr != nil {
			m.s.logger.Warn("keep partial upload", "user_id", id.UserID, "err", cerr)
		}
		return nil, m.uploadError(ctx, err)
	}
	if part.Written() < part.Spec().Size {
		if err := part.Close(); err != nil {
			return nil, m.uploadError(ctx, err)
		}
		return &parleyv1.UploadPartResponse{ReceivedBytes: uint64(part.Written())}, nil
	}
	rec, err := m.complete(ctx, part)
	if err != nil {
		return nil, err
	}
	return &parleyv1.UploadPartResponse{ReceivedBytes: uint64(rec.Size), Media: mediaInfo(rec)}, nil
}

// begin checks an upload header and opens its staged upload at the
// header's offset.
func (m *mediaService) begin(ctx context.Context, userID string, h *parleyv1.UploadHeader) (*media.Part, error) {
	if int64(h.GetSizeBytes()) > m.cfg.MaxSize {
		return nil, connect.NewError(connect.CodeInvalidArgument,
			fmt.Sprintf("header.size_bytes: %d bytes exceeds this server's limit of %d", h.GetSizeBytes(), m.cfg.MaxSize))
	}
	spec := media.UploadSpec{OwnerID: userID, UploadID: h.GetUploadId(), FileName: h.GetFileName(), Size: int64(h.GetSizeBytes())}
	copy(spec.SHA256[:], h.GetSha256())
	part, err := m.staging.Begin(spec, int64(h.GetOffset()))
	if err != nil {
		return nil, m.uploadError(ctx, err)
	}
	return part, nil
}

// complete verifies a fully staged upload and stores it.
func (m *mediaService) complete(ctx context.Context, part *media.Part) (storage.Media, error) {
	spec := part.Spec()
	f, done, err := part.Complete()
	if errors.Is(err, media.ErrOffset) {
		// The stream ended early. What arrived stays staged.
		return storage.Media{}, connect.NewError(connect.CodeFailedPrecondition, fmt.Sprintf(
			"chunk: the stream ended after %d of %d bytes; resume from there (GetUpload)", part.Written(), spec.Size))
	}
	if err != nil {
		return storage.Media{}, m.uploadError(ctx, err)
	}
	defer done()
	return m.storeUpload(ctx, spec, f)
}

// storeUpload turns a complete, verified upload into stored media: it detects
// the content type, inspects and thumbnails images, writes the blobs
// (skipping bytes already stored) and records the media.
func (m *mediaService) storeUpload(ctx context.Context, spec media.UploadSpec, f *os.File) (storage.Media, error) {
	head := make([]byte, 512)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return storage.Media{}, toConnect(ctx, m.s.logger, "Upload", fmt.Errorf("read staged upload: %w", err))
	}
	rec := storage.Media{
		ID:          uuid.Must(uuid.NewV7()).String(),
		UploaderID:  spec.OwnerID,
		BlobKey:     hex.EncodeToString(spec.SHA256[:]),
		Size:        spec.Size,
		ContentType: media.Detect(head[:n]),
		FileName:    spec.FileName,
		CreatedAt:   m.s.now(),
	}
	var thumb media.Thumb
	if media.IsImage(rec.ContentType) {
		// The header alone first: a decompression bomb is refused before
		// any pixel is decoded.
		w, h, err := media.InspectImage(io.NewSectionReader(f, 0, spec.Size), m.cfg.MaxPixels)
		if err != nil {
			return storage.Media{}, m.uploadError(ctx, err)
		}
		thumb, err = media.Thumbnail(io.NewSectionReader(f, 0, spec.Size), media.DefaultLimits().ThumbSide, m.cfg.MaxPixels)
		if err != nil {
			return storage.Media{}, m.uploadError(ctx, err)
		}
		sum := sha256.Sum256(thumb.Data)
		rec.Width, rec.Height = w, h
		rec.ThumbKey = hex.EncodeToString(sum[:])
		rec.ThumbSize = int64(len(thumb.Data))
		rec.ThumbContentType = thumb.ContentType
		rec.ThumbWidth, rec.ThumbHeight = thumb.Width, thumb.Height
	}
	keys := []string{rec.BlobKey}
	if rec.ThumbKey != "" {
		keys = append(keys, rec.ThumbKey)
	}
	// Marked in use before the bytes go in, so a sweep running meanwhile
	// cannot delete a blob this upload found already stored.
	if err := m.store.TouchBlobs(ctx, keys, rec.CreatedAt); err != nil {
		return storage.Media{}, toConnect(ctx, m.s.logger, "Upload", err)
	}
	if err := m.putOnce(ctx, rec.BlobKey, io.NewSectionReader(f, 0, spec.Size), spec.Size, rec.ContentType); err != nil {
		return storage.Media{}, toConnect(ctx, m.s.logger, "Upload", err)
	}
	if rec.ThumbKey != "" {
		if err := m.putOnce(ctx, rec.ThumbKey, bytes.NewReader(thumb.Data), rec.ThumbSize, rec.ThumbContentType); err != nil {
			return storage.Media{}, toConnect(ctx, m.s.logger, "Upload", err)
		}
	}
	if err := m.store.CreateMedia(ctx, rec); err != nil {
		return storage.Media{}, toConnect(ctx, m.s.logger, "Upload", err)
	}
	return rec, nil
}

// putOnce writes a content-addressed blob unless a blob of that size is
// already there: same key, same bytes.
func (m *mediaService) putOnce(ctx context.Context, key string, r io.Reader, size int64, contentType string) error {
	if info, err := m.blobs.Stat(ctx, key); err == nil && info.Size == size {
		return nil
	}
	select {
	case m.puts <- struct{}{}:
		defer func() { <-m.puts }()
	case <-ctx.Done():
		return ctx.Err()
	}
	return m.blobs.Put(ctx, key, r, size, contentType)
}

// uploadError maps what staging and inspection report to codes naming the
// field at fault.
func (m *mediaService) uploadError(ctx context.Context, err error) error {
	switch {
	case errors.Is(err, media.ErrTooLarge):
		return connect.NewError(connect.CodeInvalidArgument, "chunk: more bytes than header.size_bytes declared")
	case errors.Is(err, media.ErrChecksum):
		return connect.NewError(connect.CodeInvalidArgument, "header.sha256: "+err.Error()+"; start the upload over")
	case errors.Is(err, media.ErrOffset):
		return connect.NewError(connect.CodeFailedPrecondition, "header.offset: "+err.Error())
	case errors.Is(err, media.ErrSpecMismatch):
		return connect.NewError(connect.CodeFailedPrecondition, "header: "+err.Error())
	case errors.Is(err, media.ErrUploadBusy):
		return connect.NewError(connect.CodeAborted, "header.upload_id: this upload is already in progress on another stream")
	case errors.Is(err, media.ErrTooManyPixels):
		return connect.NewError(connect.CodeInvalidArgument, "image: "+err.Error())
	case errors.Is(err, media.ErrNotImage):
		return connect.NewError(connect.CodeInvalidArgument, "image: the bytes look like an image but do not decode as one")
	default:
		return toConnect(ctx, m.s.logger, "Upload", err)
	}
}

func (m *mediaService) GetUpload(ctx context.Context, req *parleyv1.GetUploadRequest) (*parleyv1.GetUploadResponse, error) {
	id := mustIdentity(ctx)
	n, spec, err := m.staging.Staged(id.UserID, req.GetUploadId())
	if errors.Is(err, media.ErrUploadNotFound) {
		return nil, connect.NewError(connect.CodeNotFound, "upload_id: no unfinished upload with this id")
	}
	if err != nil {
		return nil, m.uploadError(ctx, err)
	}
	return &parleyv1.GetUploadResponse{ReceivedBytes: uint64(n), SizeBytes: uint64(spec.Size)}, nil
}

// readable returns the media if userID may read it; NotFound otherwise,
// whether or not it exists, so ids cannot be probed.
func (m *mediaService) readable(ctx context.Context, userID, mediaID, op string) (storage.Media, error) {
	ok, err := m.store.CanReadMedia(ctx, userID, mediaID)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && !ok) {
		return storage.Media{}, errMediaNotFound
	}
	if err != nil {
		return storage.Media{}, toConnect(ctx, m.s.logger, op, err)
	}
	rec, err := m.store.GetMedia(ctx, mediaID)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.Media{}, errMediaNotFound
	}
	if err != nil {
		return storage.Media{}, toConnect(ctx, m.s.logger, op, err)
	}
	return rec, nil
}

func (m *mediaService) Download(ctx context.Context, req *parleyv1.DownloadRequest, stream parleyv1connect.MediaServiceDownloadServerStream) error {
	id := mustIdentity(ctx)
	rec, err := m.readable(ctx, id.UserID, req.GetMediaId(), "Download")
	if err != nil {
		return err
	}
	key, size := rec.BlobKey, rec.Size
	if req.GetThumbnail() {
		if rec.ThumbKey == "" {
			return connect.NewError(connect.CodeNotFound, "thumbnail: this media has no thumbnail")
		}
		key, size = rec.ThumbKey, rec.ThumbSize
	}
	if req.GetOffset() > uint64(size) {
		return connect.NewError(connect.CodeOutOfRange, fmt.Sprintf("offset: %d is past the end (%d bytes)", req.GetOffset(), size))
	}
	r, _, err := m.blobs.Open(ctx, key, int64(req.GetOffset()))
	if err != nil {
		return toConnect(ctx, m.s.logger, "Download", err)
	}
	defer r.Close()
	if err := stream.Send(&parleyv1.DownloadResponse{Part: &parleyv1.DownloadResponse_Info{Info: mediaInfo(rec)}}); err != nil {
		return err
	}
	buf := make([]byte, downloadChunk)
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 {
			if err := stream.Send(&parleyv1.DownloadResponse{Part: &parleyv1.DownloadResponse_Chunk{Chunk: buf[:n]}}); err != nil {
				return err
			}
		}
		switch {
		case errors.Is(rerr, io.EOF), errors.Is(rerr, io.ErrUnexpectedEOF):
			return nil
		case rerr != nil:
			return toConnect(ctx, m.s.logger, "Download", fmt.Errorf("read blob %s: %w", key, rerr))
		}
	}
}

func (m *mediaService) GetMedia(ctx context.Context, req *parleyv1.GetMediaRequest) (*parleyv1.GetMediaResponse, error) {
	id := mustIdentity(ctx)
	rec, err := m.readable(ctx, id.UserID, req.GetMediaId(), "GetMedia")
	if err != nil {
		return nil, err
	}
	expires := m.s.now().Add(m.cfg.URLTTL)
	res := &parleyv1.GetMediaResponse{
		Media:        mediaInfo(rec),
		Url:          m.signer.Sign(rec.ID, false, expires),
		UrlsExpireAt: timestamppb.New(expires),
	}
	if rec.ThumbKey != "" {
		res.ThumbnailUrl = m.signer.Sign(rec.ID, true, expires)
	}
	return res, nil
}

// mediaRef checks that the sender may attach media mediaID (they uploaded
// it, or can already read it) as an image (wantImage) or a file, and
// returns the reference with the server's facts filled in: what the client
// claims about type, size and dimensions is replaced.
func (m *mediaService) mediaRef(ctx context.Context, userID string, ref *parleyv1.MediaRef, wantImage bool, field string) (*parleyv1.MediaRef, error) {
	rec, err := m.readable(ctx, userID, ref.GetMediaId(), "SendMessage")
	if err != nil {
		var ce *connect.Error
		if errors.As(err, &ce) && ce.Code() == connect.CodeNotFound {
			return nil, connect.NewError(connect.CodeNotFound, field+".media_id: no such media (upload it first)")
		}
		return nil, err
	}
	if wantImage && !media.IsImage(rec.ContentType) {
		return nil, connect.NewError(connect.CodeInvalidArgument,
			fmt.Sprintf("%s.media_id: the media is %s, not an image; send it as a file", field, rec.ContentType))
	}
	return &parleyv1.MediaRef{
		MediaId:     rec.ID,
		ContentType: rec.ContentType,
		FileName:    rec.FileName,
		SizeBytes:   uint64(rec.Size),
		Width:       rec.Width,
		Height:      rec.Height,
		Caption:     ref.GetCaption(),
	}, nil
}

// sweep runs one pass of the sweeper: staged uploads untouched for
// the grace period, then media no message references (and the blobs no
// media uses any more). It returns how many blobs it deleted. Safe on
// every process of a cluster at once: the store hands each dead blob to
// one of them.
func (m *mediaService) sweep(ctx context.Context) (int, error) {
	now := m.s.now()
	if n, err := m.staging.Sweep(now, m.cfg.SweepGrace); err != nil {
		m.s.logger.Warn("media sweeper: staged uploads", "err", err)
	} else if n > 0 {
		m.s.logger.Info("media sweeper: removed abandoned uploads", "count", n)
	}
	deleted := 0
	for {
		keys, err := m.store.SweepMedia(ctx, now.Add(-m.cfg.SweepGrace), 500)
		if err != nil {
			return deleted, fmt.Errorf("sweep media records: %w", err)
		}
		for _, k := range keys {
			if err := m.blobs.Delete(ctx, k); err != nil {
				return deleted, fmt.Errorf("delete blob %s: %w", k, err)
			}
			deleted++
		}
		if len(keys) == 0 {
			return deleted, nil
		}
	}
}

// ServeHTTP answers GET /media/<id>?exp=…&sig=… (URLs from GetMedia): the
// signature stands in for the token, so <img src> and plain downloads
// work. Images are shown inline; anything else is a download, never
// rendered by the browser as a page of this origin.
func (m *mediaService) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	mediaID, thumb, err := m.signer.Verify(r.URL, m.s.now())
	switch {
	case errors.Is(err, media.ErrExpired):
		http.Error(w, "this link has expired: ask for a new one (GetMedia)", http.StatusForbidden)
		return
	case err != nil:
		http.Error(w, "invalid link", http.StatusForbidden)
		return
	}
	rec, err := m.store.GetMedia(r.Context(), mediaID)
	if errors.Is(err, storage.ErrNotFound) {
		http.NotFound(w, r)
		return
	}
	if err != nil {
		m.s.logger.ErrorContext(r.Context(), "media URL: read record", "media_id", mediaID, "err", err)
		http.Error(w, "unavailable, retry later", http.StatusServiceUnavailable)
		return
	}
	key, size, ctype := rec.BlobKey, rec.Size, rec.ContentType
	if thumb {
		if rec.ThumbKey == "" {
			http.NotFound(w, r)
			return
		}
		key, size, ctype = rec.ThumbKey, rec.ThumbSize, rec.ThumbContentType
	}
	body, _, err := m.blobs.Open(r.Context(), key, 0)
	if err != nil {
		m.s.logger.ErrorContext(r.Context(), "media URL: open blob", "media_id", mediaID, "err", err)
		http.Error(w, "unavailable, retry later", http.StatusServiceUnavailable)
		return
	}
	defer body.Close()
	hdr := w.Header()
	hdr.Set("Content-Type", ctype)
	hdr.Set("Content-Length", strconv.FormatInt(size, 10))
	hdr.Set("X-Content-Type-Options", "nosniff")
	// Even a mislabelled file cannot run script as this origin.
	hdr.Set("Content-Security-Policy", "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox")
	hdr.Set("Cache-Control", "private, max-age="+strconv.Itoa(int(m.cfg.URLTTL/time.Second)))
	disposition := "attachment"
	if media.IsImage(ctype) {
		disposition = "inline"
	}
	if v := mime.FormatMediaType(disposition, map[string]string{"filename": downloadName(rec, thumb)}); v != "" {
		disposition = v
	}
	hdr.Set("Content-Disposition", disposition)
	if r.Method == http.MethodHead {
		return
	}
	if _, err := io.Copy(w, body); err != nil {
		m.s.logger.DebugContext(r.Context(), "media URL: copy interrupted", "media_id", mediaID, "err", err)
	}
}

// downloadName is the file name a browser saves: the uploader's, or one
// made from the id.
func downloadName(rec storage.Media, thumb bool) string {
	name := rec.FileName
	if name == "" {
		name = rec.ID
	}
	if thumb {
		name = "thumbnail-" + name
	}
	return name
}

func mediaInfo(rec storage.Media) *parleyv1.MediaInfo {
	info := &parleyv1.MediaInfo{
		MediaId:     rec.ID,
		ContentType: rec.ContentType,
		FileName:    rec.FileName,
		SizeBytes:   uint64(rec.Size),
		Width:       rec.Width,
		Height:      rec.Height,
		UploaderId:  rec.UploaderID,
		CreatedAt:   timestamppb.New(rec.CreatedAt),
	}
	if sum, err := hex.DecodeString(rec.BlobKey); err == nil {
		info.Sha256 = sum
	}
	if rec.ThumbKey != "" {
		info.Thumbnail = &parleyv1.Thumbnail{
			ContentType: rec.ThumbContentType,
			SizeBytes:   uint64(rec.ThumbSize),
			Width:       rec.ThumbWidth,
			Height:      rec.ThumbHeight,
		}
	}
	return info
}

// RunMediaSweeper deletes abandoned uploads and unreferenced media every
// MediaConfig.SweepInterval until ctx ends. It returns at once when the
// server has no media storage. Run it on every process: the store gives
// each dead blob to one of them.
func (s *Server) RunMediaSweeper(ctx context.Context) {
	if s.media == nil {
		return
	}
	t := time.NewTicker(s.media.cfg.SweepInterval)
	defer t.Stop()
	for {
		n, err := s.media.sweep(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			s.logger.Warn("media sweeper", "deleted_blobs", n, "err", err)
		case n > 0:
			s.logger.Info("media sweeper: deleted unreferenced media", "blobs", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
