package media_test

import (
	"bytes"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"io"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	_ "golang.org/x/image/webp" // registers WebP for image.DecodeConfig in assertions

	"github.com/parley-im/parley/server/media"
)

func TestInspectImage(t *testing.T) {
	t.Parallel()
	alpha := image.NewNRGBA(image.Rect(0, 0, 30, 20))
	tests := []struct {
		name string
		data []byte
		w, h uint32
	}{
		{"png", encodePNG(t, photo(64, 48)), 64, 48},
		{"jpeg", encodeJPEG(t, photo(48, 64)), 48, 64},
		{"gif", encodeGIF(t, photo(17, 5)), 17, 5},
		{"png_alpha", encodePNG(t, alpha), 30, 20},
		{"webp", webpSolid(7, 3, color.NRGBA{R: 1, G: 2, B: 3, A: 0xff}), 7, 3},
		{"header_only", pngHeader(4000, 3000), 4000, 3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w, h, err := media.InspectImage(bytes.NewReader(tt.data), 0)
			require.NoError(t, err)
			require.Equal(t, tt.w, w)
			require.Equal(t, tt.h, h)
		})
	}
}

func TestInspectImageRefuses(t *testing.T) {
	t.Parallel()
	jpg := encodeJPEG(t, photo(64, 48))
	badCRC := pngHeader(10, 10)
	badCRC[len(badCRC)-1] ^= 0xff
	tests := []struct {
		name      string
		data      []byte
		maxPixels int64
		want      error
	}{
		{"png_bomb", pngHeader(100_000, 100_000), 0, media.ErrTooManyPixels},
		{"gif_bomb", gifHeader(65535, 65535), 0, media.ErrTooManyPixels},
		{"webp_bomb", webpSolid(16384, 16384, color.NRGBA{A: 0xff}), 0, media.ErrTooManyPixels},
		{"tall_and_thin", pngHeader(1, 60_000_000), 0, media.ErrTooManyPixels},
		{"over_custom_limit", pngHeader(101, 100), 10_000, media.ErrTooManyPixels},
		{"zero_width_gif", gifHeader(0, 10), 0, media.ErrNotImage},
		{"zero_height_png", pngHeader(10, 0), 0, media.ErrNotImage},
		{"truncated_jpeg_header", jpg[:20], 0, media.ErrNotImage},
		{"png_bad_crc", badCRC, 0, media.ErrNotImage},
		{"text", []byte("hello, this is not an image"), 0, media.ErrNotImage},
		{"elf_named_jpg", []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00"), 0, media.ErrNotImage},
		{"empty", nil, 0, media.ErrNotImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := media.InspectImage(bytes.NewReader(tt.data), tt.maxPixels)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

// TestDecompressionBombMemory checks that a bomb is refused from its
// header alone: were its pixels allocated, 100000×100000 would need
// 30 GB. Not parallel, so that no other test's allocations are counted.
func TestDecompressionBombMemory(t *testing.T) {
	bombs := map[string][]byte{
		"png":  pngHeader(100_000, 100_000),
		"gif":  gifHeader(65535, 65535),
		"webp": webpSolid(16384, 16384, color.NRGBA{A: 0xff}),
	}
	const runs = 20
	for name, bomb := range bombs {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range runs {
			_, _, err := media.InspectImage(bytes.NewReader(bomb), 0)
			require.ErrorIs(t, err, media.ErrTooManyPixels, name)
			_, err = media.Thumbnail(bytes.NewReader(bomb), 320, 0)
			require.ErrorIs(t, err, media.ErrTooManyPixels, name)
		}
		runtime.ReadMemStats(&after)
		perRun := (after.TotalAlloc - before.TotalAlloc) / runs
		t.Logf("%s bomb: %d bytes allocated per InspectImage+Thumbnail", name, perRun)
		require.Less(t, perRun, uint64(64<<10), name)
	}
}

func TestThumbnail(t *testing.T) {
	t.Parallel()
	alpha := image.NewNRGBA(image.Rect(0, 0, 640, 640))
	for i := range alpha.Pix {
		alpha.Pix[i] = 0x80
	}
	// A GIF whose first frame covers only part of its screen: the rest is
	// transparent.
	var partial bytes.Buffer
	frame := image.NewPaletted(image.Rect(10, 10, 50, 30), color.Palette{color.Black, color.White})
	require.NoError(t, gif.EncodeAll(&partial, &gif.GIF{
		Image:  []*image.Paletted{frame},
		Delay:  []int{0},
		Config: image.Config{ColorModel: frame.Palette, Width: 100, Height: 60},
	}))
	tests := []struct {
		name   string
		data   []byte
		side   int
		w, h   uint32
		format string
	}{
		{"landscape_png", encodePNG(t, photo(1000, 500)), 320, 320, 160, media.TypeJPEG},
		{"portrait_jpeg", encodeJPEG(t, photo(300, 900)), 320, 107, 320, media.TypeJPEG},
		{"square_jpeg", encodeJPEG(t, photo(800, 800)), 320, 320, 320, media.TypeJPEG},
		{"small_gif_not_upscaled", encodeGIF(t, photo(100, 80)), 320, 100, 80, media.TypeJPEG},
		{"exactly_max_side", encodePNG(t, photo(320, 10)), 320, 320, 10, media.TypeJPEG},
		{"thin_keeps_a_pixel", encodePNG(t, photo(2000, 1)), 320, 320, 1, media.TypeJPEG},
		{"alpha_png_stays_png", encodePNG(t, alpha), 320, 320, 320, media.TypePNG},
		{"partial_gif_frame", partial.Bytes(), 50, 50, 30, media.TypePNG},
		{"webp_opaque", webpSolid(500, 250, color.NRGBA{R: 200, G: 100, B: 50, A: 0xff}), 320, 320, 160, media.TypeJPEG},
		{"webp_alpha", webpSolid(250, 500, color.NRGBA{R: 200, G: 100, B: 50, A: 0x40}), 320, 160, 320, media.TypePNG},
		{"default_side", encodePNG(t, photo(640, 480)), 0, 320, 240, media.TypeJPEG},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range []io.Reader{
				bytes.NewReader(tt.data),
				struct{ io.Reader }{bytes.NewReader(tt.data)}, // not a Seeker: replayed
			} {
				th, err := media.Thumbnail(r, tt.side, 0)
				require.NoError(t, err)
				require.Equal(t, tt.format, th.ContentType)
				require.Equal(t, tt.w, th.Width)
				require.Equal(t, tt.h, th.Height)
				cfg, format, err := image.DecodeConfig(bytes.NewReader(th.Data))
				require.NoError(t, err)
				require.Equal(t, tt.format, "image/"+format)
				require.Equal(t, int(tt.w), cfg.Width)
				require.Equal(t, int(tt.h), cfg.Height)
			}
		})
	}
}

func TestThumbnailSeeksBackToStart(t *testing.T) {
	t.Parallel()
	data := append([]byte("junk"), encodePNG(t, photo(40, 30))...)
	r := bytes.NewReader(data)
	_, err := r.Seek(4, io.SeekStart)
	require.NoError(t, err)
	th, err := media.Thumbnail(r, 320, 0)
	require.NoError(t, err)
	require.Equal(t, uint32(40), th.Width)
}

func TestThumbnailRefuses(t *testing.T) {
	t.Parallel()
	jpg := encodeJPEG(t, photo(400, 300))
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"truncated_jpeg", jpg[:len(jpg)/2], media.ErrNotImage},
		// A valid header with no image data after it.
		{"png_header_only", pngHeader(40, 30), media.ErrNotImage},
		{"pdf", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), media.ErrNotImage},
		{"bomb", pngHeader(100_000, 100_000), media.ErrTooManyPixels},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := media.Thumbnail(bytes.NewReader(tt.data), 320, 0)
			require.ErrorIs(t, err, tt.want)
		})
	}
}

// TestThumbnailEXIFOrientation encodes an image whose left half is red and
// right half blue, tags it with each EXIF orientation, and checks where
// the red half ends up.
func TestThumbnailEXIFOrientation(t *testing.T) {
	t.Parallel()
	src := image.NewRGBA(image.Rect(0, 0, 80, 40))
	for y := range 40 {
		for x := range 80 {
			c := color.RGBA{R: 0xff, A: 0xff}
			if x >= 40 {
				c = color.RGBA{B: 0xff, A: 0xff}
			}
			src.SetRGBA(x, y, c)
		}
	}
	jpg := encodeJPEG(t, src)
	// Where red lands, as a point inside the red half of the upright
	// thumbnail.
	tests := []struct {
		o    uint16
		w, h uint32
		red  image.Point
		blue image.Point
	}{
		{1, 80, 40, image.Pt(10, 20), image.Pt(70, 20)},
		{2, 80, 40, image.Pt(70, 20), image.Pt(10, 20)},
		{3, 80, 40, image.Pt(70, 20), image.Pt(10, 20)},
		{4, 80, 40, image.Pt(10, 20), image.Pt(70, 20)},
		{5, 40, 80, image.Pt(20, 10), image.Pt(20, 70)},
		{6, 40, 80, image.Pt(20, 10), image.Pt(20, 70)},
		{7, 40, 80, image.Pt(20, 70), image.Pt(20, 10)},
		{8, 40, 80, image.Pt(20, 70), image.Pt(20, 10)},
	}
	for _, tt := range tests {
		th, err := media.Thumbnail(bytes.NewReader(withEXIFOrientation(jpg, tt.o)), 320, 0)
		require.NoError(t, err)
		require.Equal(t, tt.w, th.Width, "orientation %d", tt.o)
		require.Equal(t, tt.h, th.Height, "orientation %d", tt.o)
		m, err := jpeg.Decode(bytes.NewReader(th.Data))
		require.NoError(t, err)
		r, _, b, _ := m.At(tt.red.X, tt.red.Y).RGBA()
		require.Greater(t, r, b, "orientation %d: red expected at %v", tt.o, tt.red)
		r, _, b, _ = m.At(tt.blue.X, tt.blue.Y).RGBA()
		require.Greater(t, b, r, "orientation %d: blue expected at %v", tt.o, tt.blue)
	}
	// InspectImage reports the stored size, not the upright one.
	w, h, err := media.InspectImage(bytes.NewReader(withEXIFOrientation(jpg, 6)), 0)
	require.NoError(t, err)
	require.Equal(t, [2]uint32{80, 40}, [2]uint32{w, h})
}

// TestThumbnailAntiAliased shrinks one-pixel checkerboards: each
// thumbnail pixel must be a mid grey, not black or white as sampling a
// few source pixels (aliasing) would give.
func TestThumbnailAntiAliased(t *testing.T) {
	t.Parallel()
	const w, h = 1600, 800
	gray := image.NewGray(image.Rect(0, 0, w, h))
	rgba := image.NewRGBA(image.Rect(0, 0, w, h))
	pal := image.NewPaletted(image.Rect(0, 0, w, h), color.Palette{color.Black, color.White})
	for y := range h {
		for x := range w {
			v := uint8((x + y + 1) % 2) // 1 on even squares
			gray.Pix[y*w+x] = v * 0xff
			pal.Pix[y*w+x] = v
			copy(rgba.Pix[(y*w+x)*4:], []byte{v * 0xff, v * 0xff, v * 0xff, 0xff})
		}
	}
	for name, data := range map[string][]byte{
		"gray":     encodePNG(t, gray),
		"rgba":     encodePNG(t, rgba),
		"paletted": encodeGIF(t, pal), // no box fast path: Catmull-Rom alone
	} {
		th, err := media.Thumbnail(bytes.NewReader(data), 320, 0)
		require.NoError(t, err, name)
		m, err := jpeg.Decode(bytes.NewReader(th.Data))
		require.NoError(t, err, name)
		ycc, ok := m.(*image.Gray)
		if !ok {
			yc, isYCC := m.(*image.YCbCr)
			require.True(t, isYCC, "%s: %T", name, m)
			ycc = &image.Gray{Pix: yc.Y, Stride: yc.YStride, Rect: yc.Rect}
		}
		lo, hi := uint8(0xff), uint8(0)
		for y := range ycc.Rect.Dy() {
			for _, v := range ycc.Pix[y*ycc.Stride : y*ycc.Stride+ycc.Rect.Dx()] {
				lo, hi = min(lo, v), max(hi, v)
			}
		}
		require.GreaterOrEqual(t, lo, uint8(0x68), name)
		require.LessOrEqual(t, hi, uint8(0x98), name)
	}
}

func BenchmarkThumbnail(b *testing.B) {
	jpg := encodeJPEG(b, photo(4000, 3000))
	b.SetBytes(int64(len(jpg)))
	b.ReportAllocs()
	for b.Loop() {
		th, err := media.Thumbnail(bytes.NewReader(jpg), 320, 0)
		if err != nil {
			b.Fatal(err)
		}
		if th.Width != 320 || th.Height != 240 {
			b.Fatalf("thumbnail is %dx%d", th.Width, th.Height)
		}
	}
}
