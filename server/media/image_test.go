package media

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/image/draw"
)

func TestFit(t *testing.T) {
	t.Parallel()
	tests := []struct{ w, h, side, tw, th int }{
		{4000, 3000, 320, 320, 240},
		{3000, 4000, 320, 240, 320},
		{320, 320, 320, 320, 320},
		{100, 50, 320, 100, 50},
		{100000, 1, 320, 320, 1},
		{1, 100000, 320, 1, 320},
		{1001, 1000, 320, 320, 320}, // 319.68 rounds up
	}
	for _, tt := range tests {
		tw, th := fit(tt.w, tt.h, tt.side)
		require.Equal(t, [2]int{tt.tw, tt.th}, [2]int{tw, th}, "%dx%d", tt.w, tt.h)
	}
}

// BenchmarkScale compares the kernels Thumbnail could use on a decoded
// 4000×3000 JPEG (YCbCr 4:2:0, as cameras write) scaled to 320×240; it is
// what the choice of scaler rests on.
func BenchmarkScale(b *testing.B) {
	src := image.NewRGBA(image.Rect(0, 0, 4000, 3000))
	for i := range src.Pix {
		src.Pix[i] = byte(i * 31 / 7)
	}
	var buf bytes.Buffer
	require.NoError(b, jpeg.Encode(&buf, src, &jpeg.Options{Quality: 90}))
	img, err := jpeg.Decode(&buf)
	require.NoError(b, err)
	dst := image.NewRGBA(image.Rect(0, 0, 320, 240))
	for _, k := range []struct {
		name string
		s    draw.Scaler
	}{
		{"nearest_neighbor", draw.NearestNeighbor},
		{"approx_bilinear", draw.ApproxBiLinear},
		{"bilinear", draw.BiLinear},
		{"catmull_rom", draw.CatmullRom},
		{"box_then_catmull_rom", boxThen{draw.CatmullRom}},
	} {
		b.Run(k.name, func(b *testing.B) {
			for b.Loop() {
				k.s.Scale(dst, dst.Rect, img, img.Bounds(), draw.Src, nil)
			}
		})
	}
}

// boxThen is what Thumbnail does: shrink, then the kernel.
type boxThen struct{ s draw.Scaler }

func (b boxThen) Scale(dst draw.Image, dr image.Rectangle, src image.Image, sr image.Rectangle, op draw.Op, opts *draw.Options) {
	if k := shrinkFactor(sr.Dx(), sr.Dy(), dr.Dx(), dr.Dy()); k > 1 {
		if small, ok := shrink(src, k); ok {
			src, sr = small, small.Rect
		}
	}
	b.s.Scale(dst, dr, src, sr, op, opts)
}

func TestShrinkFactor(t *testing.T) {
	t.Parallel()
	require.Equal(t, 6, shrinkFactor(4000, 3000, 320, 240))
	require.Equal(t, 1, shrinkFactor(640, 480, 320, 240))
	require.Equal(t, 1, shrinkFactor(1000, 500, 320, 160)) // not twice the size
	require.Equal(t, 1, shrinkFactor(20000, 1, 320, 1))
}

func TestShrink(t *testing.T) {
	t.Parallel()
	// 5×3 images shrunk by 2: 3×2 blocks, the last column and row partial.
	rgba := image.NewRGBA(image.Rect(0, 0, 5, 3))
	nrgba := image.NewNRGBA(image.Rect(0, 0, 5, 3))
	gray := image.NewGray(image.Rect(0, 0, 5, 3))
	for y := range 3 {
		for x := range 5 {
			v := uint8(10 * (x + 5*y))
			rgba.SetRGBA(x, y, color.RGBA{v, v, v, 0xff})
			gray.SetGray(x, y, color.Gray{v})
			// Left column opaque red, the rest transparent blue.
			c := color.NRGBA{B: 0xff}
			if x == 0 {
				c = color.NRGBA{R: 0xff, A: 0xff}
			}
			nrgba.SetNRGBA(x, y, c)
		}
	}
	// Block means of v = 10*(x+5y): rows {0,1} and {2}, columns {0,1},
	// {2,3}, {4}.
	want := [2][3]uint8{{30, 50, 65}, {105, 125, 140}}
	for _, img := range []image.Image{rgba, gray} {
		out, ok := shrink(img, 2)
		require.True(t, ok)
		require.Equal(t, image.Rect(0, 0, 3, 2), out.Rect)
		for y := range 2 {
			for x := range 3 {
				require.Equal(t, color.RGBA{want[y][x], want[y][x], want[y][x], 0xff}, out.RGBAAt(x, y), "%T at %d,%d", img, x, y)
			}
		}
	}
	out, ok := shrink(nrgba, 2)
	require.True(t, ok)
	// Half of the first block is opaque red; transparent blue lends no
	// colour.
	require.Equal(t, color.RGBA{R: 0x7f, A: 0x7f}, out.RGBAAt(0, 0))
	require.Equal(t, color.RGBA{}, out.RGBAAt(1, 0))

	ycc := image.NewYCbCr(image.Rect(0, 0, 6, 4), image.YCbCrSubsampleRatio420)
	for i := range ycc.Y {
		ycc.Y[i] = 100
	}
	for i := range ycc.Cb {
		ycc.Cb[i], ycc.Cr[i] = 90, 160
	}
	out, ok = shrink(ycc, 3)
	require.True(t, ok)
	r, g, b := color.YCbCrToRGB(100, 90, 160)
	require.Equal(t, color.RGBA{r, g, b, 0xff}, out.RGBAAt(1, 1))

	_, ok = shrink(image.NewPaletted(image.Rect(0, 0, 4, 4), color.Palette{color.Black}), 2)
	require.False(t, ok, "no fast path: the caller scales directly")
}
