package media

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/gif"
	"image/jpeg"
	"image/png"
	"io"

	"golang.org/x/image/draw"
	"golang.org/x/image/webp"
)

// thumbJPEGQuality is the JPEG quality of opaque thumbnails.
const thumbJPEGQuality = 80

// codec decodes one image format. Formats are called directly, by the
// type Detect found, rather than through image.Decode's registry: a file
// must decode as what its bytes say it is.
type codec struct {
	config func(io.Reader) (image.Config, error)
	decode func(io.Reader) (image.Image, error)
}

var codecs = map[string]codec{
	TypeJPEG: {jpeg.DecodeConfig, jpeg.Decode},
	TypePNG:  {png.DecodeConfig, png.Decode},
	// gif.Decode stops after the first frame.
	TypeGIF:  {gif.DecodeConfig, gif.Decode},
	TypeWebP: {webp.DecodeConfig, webp.Decode},
}

// scaler is the resampling kernel for the last step of a thumbnail: from
// the image, or from its box-filtered reduction to two to four times the
// thumbnail's size (see shrink). CatmullRom is the sharpest of
// x/image/draw's kernels; it costs little on so small a source.
// BenchmarkScale measures the alternatives on a full 4000×3000 photo.
var scaler draw.Interpolator = draw.CatmullRom

// Thumb is an encoded thumbnail.
type Thumb struct {
	// Data is the encoded image, ContentType its format: TypeJPEG for
	// opaque images, TypePNG for those with transparency.
	Data        []byte
	ContentType string
	// Width and Height are the thumbnail's pixel size, after any EXIF
	// rotation.
	Width, Height uint32
}

// InspectImage reads only the header of the image in r and returns its
// pixel size. It detects the format from the leading bytes (see Detect),
// so a PNG named ".jpg" is read as a PNG. It fails with ErrNotImage when
// the bytes are not a JPEG, PNG, GIF or WebP or their header does not
// decode, and with ErrTooManyPixels when width*height exceeds maxPixels
// (≤ 0 means DefaultLimits().MaxPixels). No pixel data is decoded or
// allocated, so a decompression bomb costs a few kilobytes. It may read r
// beyond the header.
func InspectImage(r io.Reader, maxPixels int64) (width, height uint32, err error) {
	_, w, h, err := inspect(r, maxPixels)
	return w, h, err
}

// Thumbnail decodes the image in r and returns a version whose longest
// side is at most maxSide pixels (≤ 0 means DefaultLimits().ThumbSide),
// never scaled up. Scaling down is anti-aliased: a box filter to two to
// four times the target size, then Catmull-Rom. The header is
// inspected first (see InspectImage), so an image over maxPixels is
// refused before any pixel is decoded. Opaque images become a JPEG
// (quality 80), images with transparency a PNG; of an animated GIF only
// the first frame is used. A JPEG's EXIF orientation is applied, so
// phone photos come out upright; Thumb's size is after rotation, whereas
// InspectImage reports the stored size.
//
// When r is an io.Seeker, Thumbnail seeks back to where it found r to
// decode after inspecting; otherwise it keeps the header bytes it read in
// memory to replay them. Errors: ErrNotImage when the pixels do not
// decode (a truncated file), ErrTooManyPixels, or r's own errors.
//
// Decoding takes about 4 bytes per pixel of memory (less for JPEG), so
// callers bound concurrency by their memory budget.
func Thumbnail(r io.Reader, maxSide int, maxPixels int64) (Thumb, error) {
	if maxSide <= 0 {
		maxSide = DefaultLimits().ThumbSide
	}
	rr, err := newReplayer(r)
	if err != nil {
		return Thumb{}, err
	}
	format, w, h, err := inspect(rr, maxPixels)
	if err != nil {
		return Thumb{}, err
	}
	if err := rr.rewind(); err != nil {
		return Thumb{}, err
	}
	orientation := 1
	if format == TypeJPEG {
		orientation = jpegOrientation(rr)
		if err := rr.rewind(); err != nil {
			return Thumb{}, err
		}
	}
	rr.stopRecording()

	img, err := codecs[format].decode(bufio.NewReaderSize(rr, 64<<10))
	if err != nil {
		return Thumb{}, fmt.Errorf("%w: %s: %w", ErrNotImage, format, err)
	}
	img, err = fitScreen(img, int(w), int(h))
	if err != nil {
		return Thumb{}, err
	}

	tw, th := fit(int(w), int(h), maxSide)
	dst := image.NewRGBA(image.Rect(0, 0, tw, th))
	src := img
	if k := shrinkFactor(int(w), int(h), tw, th); k > 1 {
		if small, ok := shrink(img, k); ok {
			src = small
		}
	}
	if tw == int(w) && th == int(h) {
		draw.Draw(dst, dst.Rect, src, src.Bounds().Min, draw.Src)
	} else {
		scaler.Scale(dst, dst.Rect, src, src.Bounds(), draw.Src, nil)
	}
	dst = orient(dst, orientation)

	var buf bytes.Buffer
	t := Thumb{
		Width:  uint32(dst.Rect.Dx()), //nolint:gosec // at most maxSide
		Height: uint32(dst.Rect.Dy()), //nolint:gosec // at most maxSide
	}
	if isOpaque(img) {
		t.ContentType = TypeJPEG
		err = jpeg.Encode(&buf, dst, &jpeg.Options{Quality: thumbJPEGQuality})
	} else {
		t.ContentType = TypePNG
		err = png.Encode(&buf, dst)
	}
	if err != nil {
		return Thumb{}, fmt.Errorf("media: encode thumbnail: %w", err)
	}
	t.Data = buf.Bytes()
	return t, nil
}

// inspect detects the format of r's content and decodes its header.
func inspect(r io.Reader, maxPixels int64) (format string, width, height uint32, err error) {
	if maxPixels <= 0 {
		maxPixels = DefaultLimits().MaxPixels
	}
	br := bufio.NewReaderSize(r, sniffLen)
	head, err := br.Peek(sniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return "", 0, 0, err
	}
	format = mediaType(Detect(head))
	c, ok := codecs[format]
	if !ok {
		return "", 0, 0, fmt.Errorf("%w: content is %s", ErrNotImage, format)
	}
	cfg, err := c.config(br)
	if err != nil {
		return "", 0, 0, fmt.Errorf("%w: %s header: %w", ErrNotImage, format, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return "", 0, 0, fmt.Errorf("%w: %s is %dx%d", ErrNotImage, format, cfg.Width, cfg.Height)
	}
	// Each side is at least 1, so checking the sides first keeps the
	// product from overflowing.
	if int64(cfg.Width) > maxPixels || int64(cfg.Height) > maxPixels ||
		int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return "", 0, 0, fmt.Errorf("%w: %dx%d, at most %d pixels", ErrTooManyPixels, cfg.Width, cfg.Height, maxPixels)
	}
	return format, uint32(cfg.Width), uint32(cfg.Height), nil //nolint:gosec // positive and at most maxPixels
}

// fitScreen checks that the decoded image has the size its header
// declared. A GIF's first frame may cover only part of its logical
// screen; it is then drawn onto a transparent screen-sized canvas.
func fitScreen(img image.Image, w, h int) (image.Image, error) {
	screen := image.Rect(0, 0, w, h)
	b := img.Bounds()
	if b == screen {
		return img, nil
	}
	if _, ok := img.(*image.Paletted); !ok || b.Empty() || !b.In(screen) {
		return nil, fmt.Errorf("%w: decoded %v, header said %dx%d", ErrNotImage, b, w, h)
	}
	canvas := image.NewNRGBA(screen)
	draw.Draw(canvas, b, img, b.Min, draw.Src)
	return canvas, nil
}

// fit returns the size of a w×h image scaled so that its longest side is
// at most maxSide, keeping its aspect ratio and never scaling up.
func fit(w, h, maxSide int) (int, int) {
	if w <= maxSide && h <= maxSide {
		return w, h
	}
	long, short := w, h
	if h > w {
		long, short = h, w
	}
	// Round to nearest; a very thin image keeps at least one pixel.
	s := max(1, int((int64(short)*int64(maxSide)+int64(long)/2)/int64(long)))
	if w >= h {
		return maxSide, s
	}
	return s, maxSide
}

// isOpaque reports whether every pixel of img is fully opaque. Types
// without an Opaque method are assumed to have transparency.
func isOpaque(img image.Image) bool {
	o, ok := img.(interface{ Opaque() bool })
	return ok && o.Opaque()
}

// replayer lets Thumbnail read the start of a stream twice: by seeking
// when the reader can, else by recording what was read until
// stopRecording.
type replayer struct {
	r      io.Reader
	seeker io.Seeker
	start  int64

	buf       []byte // recorded bytes (non-seekable readers)
	off       int    // read position within buf
	recording bool
}

func newReplayer(r io.Reader) (*replayer, error) {
	p := &replayer{r: r}
	if s, ok := r.(io.Seeker); ok {
		start, err := s.Seek(0, io.SeekCurrent)
		if err != nil {
			return nil, fmt.Errorf("media: seek: %w", err)
		}
		p.seeker, p.start = s, start
		return p, nil
	}
	p.recording = true
	return p, nil
}

func (p *replayer) Read(b []byte) (int, error) {
	if p.off < len(p.buf) {
		n := copy(b, p.buf[p.off:])
		p.off += n
		return n, nil
	}
	n, err := p.r.Read(b)
	if p.recording {
		p.buf = append(p.buf, b[:n]...)
		p.off += n
	}
	return n, err
}

// rewind goes back to the start of the stream.
func (p *replayer) rewind() error {
	if p.seeker != nil {
		if _, err := p.seeker.Seek(p.start, io.SeekStart); err != nil {
			return fmt.Errorf("media: seek: %w", err)
		}
		return nil
	}
	p.off = 0
	return nil
}

// stopRecording keeps replaying what was recorded but records no more:
// the final pass streams the rest of the content through.
func (p *replayer) stopRecording() { p.recording = false }
