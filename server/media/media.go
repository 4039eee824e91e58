// Package media holds the building blocks of the media service: it names
// an upload's content type from its bytes, checks and thumbnails images
// without trusting their headers, signs short-lived download URLs, and
// stages resumable uploads on local disk.
//
// It knows nothing of Connect or of storage: the MediaService handler
// composes these pieces with a storage.BlobStore and storage.MediaStore.
// Errors are the sentinels below, wrapped with detail; match them with
// errors.Is. Wrapped messages name no server paths unless the error is an
// I/O failure, which the handler reports as internal.
package media

import "errors"

// Sentinel errors. Each is returned wrapped with detail; match with
// errors.Is.
var (
	// ErrNotImage: the bytes do not decode as the image format they were
	// detected as (truncated, corrupt, or not an image at all), or the
	// image declares a zero width or height.
	ErrNotImage = errors.New("media: not a decodable image")
	// ErrTooManyPixels: the image header declares more pixels than allowed;
	// it was refused before its pixels were decoded.
	ErrTooManyPixels = errors.New("media: image has too many pixels")
	// ErrTooLarge: an upload declares, or its writer sends, more bytes than
	// allowed.
	ErrTooLarge = errors.New("media: upload too large")
	// ErrChecksum: the complete upload does not hash to its declared
	// SHA-256. The staged bytes are gone; the client starts over.
	ErrChecksum = errors.New("media: checksum mismatch")
	// ErrOffset: the client's offset is not the number of bytes staged, or
	// an upload was completed before all its bytes arrived. Staging.Staged
	// tells where to resume.
	ErrOffset = errors.New("media: wrong upload offset")
	// ErrSpecMismatch: a resumed upload names a different file (name, size
	// or hash) than the one staged under its id.
	ErrSpecMismatch = errors.New("media: upload does not match the staged one")
	// ErrUploadNotFound: nothing is staged under that owner and upload id.
	ErrUploadNotFound = errors.New("media: upload not found")
	// ErrUploadBusy: another writer holds the upload (a concurrent Begin, or
	// an upload being completed or swept). Retry once it is done.
	ErrUploadBusy = errors.New("media: upload in use")
	// ErrSignature: a download URL is malformed or its signature does not
	// match.
	ErrSignature = errors.New("media: bad URL signature")
	// ErrExpired: a download URL's signature is valid but its time is up.
	ErrExpired = errors.New("media: URL expired")
)

// Limits bound what an upload may be. A zero field means its default (see
// DefaultLimits).
type Limits struct {
	// MaxSize is the largest upload accepted, in bytes. Default 100 MiB.
	MaxSize int64
	// MaxPixels bounds width*height of an image, checked from its header
	// before any pixel is decoded (decompression bombs). Default 50_000_000.
	// Decoding an image this large takes up to 4 bytes per pixel.
	MaxPixels int64
	// ThumbSide is the longest side of a thumbnail, in pixels. Default 320.
	ThumbSide int
}

// DefaultLimits returns the limits used where a field is zero.
func DefaultLimits() Limits {
	return Limits{
		MaxSize:   100 << 20,
		MaxPixels: 50_000_000,
		ThumbSide: 320,
	}
}

// withDefaults fills zero (or negative) fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxSize <= 0 {
		l.MaxSize = d.MaxSize
	}
	if l.MaxPixels <= 0 {
		l.MaxPixels = d.MaxPixels
	}
	if l.ThumbSide <= 0 {
		l.ThumbSide = d.ThumbSide
	}
	return l
}
