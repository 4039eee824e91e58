package storage

import (
	"context"
	"io"
	"time"
)

// BlobStore holds media bytes (uploads and their thumbnails) under keys the
// caller chooses. The media service names blobs after their content
// (SHA-256), so identical bytes are stored once; the store itself knows
// nothing of that and never looks inside a blob.
//
// Implementations are safe for concurrent use and honour ctx cancellation.
// Backends: storage/blobfs (a directory: the embedded default) and
// storage/s3 (S3-compatible object storage, for clusters).
type BlobStore interface {
	// Put stores exactly size bytes read from r under key, replacing any
	// blob there. It is all or nothing: when r fails, ends early, holds
	// more than size bytes or ctx ends, Put returns an error and no reader
	// ever sees a partial blob under key (the previous one, if any, stays).
	// contentType is recorded where the backend can serve it.
	Put(ctx context.Context, key string, r io.Reader, size int64, contentType string) error
	// Open returns the blob's bytes from offset on (0 ≤ offset ≤ size), and
	// the blob's total size. ErrNotFound when there is no blob under key.
	// The caller closes the reader.
	Open(ctx context.Context, key string, offset int64) (io.ReadCloser, BlobInfo, error)
	// Stat describes the blob under key, or returns ErrNotFound.
	Stat(ctx context.Context, key string) (BlobInfo, error)
	// Delete removes the blob under key. Deleting a missing blob is not an
	// error.
	Delete(ctx context.Context, key string) error
	// Close releases the store. It is idempotent.
	Close() error
}

// BlobInfo describes a stored blob.
type BlobInfo struct {
	Size int64
	// ModTime is when the blob was last written.
	ModTime time.Time
}

// Media is one upload: who uploaded what. Several media may share one blob
// (the same bytes uploaded twice, or by two users); each keeps its own id,
// uploader and file name.
type Media struct {
	// ID is chosen by the caller, globally unique.
	ID         string
	UploaderID string
	// BlobKey names the bytes in the BlobStore (their SHA-256, hex).
	BlobKey string
	Size    int64
	// ContentType was detected from the bytes, never taken from the
	// client.
	ContentType string
	// FileName is the client's name for the file, for downloads; may be
	// empty.
	FileName string
	// Width and Height are the image's pixel size; 0 for other files.
	Width, Height uint32
	// ThumbKey names the thumbnail's bytes in the BlobStore; empty when
	// there is none (not an image).
	ThumbKey                string
	ThumbSize               int64
	ThumbContentType        string
	ThumbWidth, ThumbHeight uint32
	CreatedAt               time.Time
}

// MediaStore records uploads, which messages reference them, and who may
// therefore read them.
type MediaStore interface {
	// CreateMedia records m, and marks m.BlobKey and m.ThumbKey (when set)
	// as in use at m.CreatedAt, so the sweeper spares them for its grace
	// period even before any message references them. ErrConflict when
	// m.ID exists.
	CreateMedia(ctx context.Context, m Media) error
	// TouchBlobs marks blob keys as in use now, before their bytes are
	// written: a sweep running meanwhile then leaves them alone (see
	// SweepMedia). Call it before BlobStore.Put of content that may
	// already be stored.
	TouchBlobs(ctx context.Context, keys []string, now time.Time) error
	// GetMedia returns a media record, or ErrNotFound.
	GetMedia(ctx context.Context, id string) (Media, error)
	// CanReadMedia reports whether userID may read media id: it uploaded
	// it, or it is a member of a conversation holding a message that
	// references the media (NewMessage.MediaID), is not recalled, and lies
	// at or after the user's join point. ErrNotFound when the media does
	// not exist; false (no error) when it exists but userID may not read
	// it. Callers answer both the same way, so a stranger cannot probe for
	// ids.
	CanReadMedia(ctx context.Context, userID, mediaID string) (bool, error)
	// SweepMedia deletes up to limit media records created before
	// olderThan that no message references (recalled messages do not
	// count), then returns the blob keys that no media record uses any
	// more and that were last marked in use (CreateMedia, TouchBlobs)
	// before olderThan, forgetting them. The caller deletes those blobs
	// from the BlobStore. Calling it again after a crash between the two
	// steps is safe: a forgotten key is never returned twice, so callers
	// delete blobs before relying on the next sweep (see the media
	// service's sweeper).
	SweepMedia(ctx context.Context, olderThan time.Time, limit int) (deadBlobKeys []string, err error)
}
