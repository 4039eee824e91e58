package media

import (
	"image"
	"image/color"
)

// shrinkFactor returns the integer factor by which a w×h image may be box
// filtered before resampling to tw×th, keeping at least twice the target
// size so that the resampling kernel still does the final, sharper
// step; 1 when a box step is not worth it.
func shrinkFactor(w, h, tw, th int) int {
	return max(1, min(w/(2*tw), h/(2*th)))
}

// shrink reduces img by the integer factor k with a box filter: each
// output pixel is the mean of a k×k block (a partial block at the right
// and bottom edges is averaged over what it has). This anti-aliases as
// well as a wide kernel at a fraction of the cost, since every source
// pixel is read once. ok is false for image types without a fast path
// (the caller then scales img directly).
func shrink(img image.Image, k int) (out *image.RGBA, ok bool) {
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	ow, oh := (w+k-1)/k, (h+k-1)/k
	var add func(y int, acc []uint32)
	switch m := img.(type) {
	case *image.YCbCr:
		// Sum Y, Cb and Cr; convert the means. The conversion is affine,
		// so this equals averaging RGB, bar clamping.
		add = func(y int, acc []uint32) {
			yi := m.YOffset(b.Min.X, y)
			for ox, x := 0, 0; x < w; ox++ {
				a := acc[ox*4 : ox*4+3]
				for end := min(x+k, w); x < end; x++ {
					ci := m.COffset(b.Min.X+x, y)
					a[0] += uint32(m.Y[yi+x])
					a[1] += uint32(m.Cb[ci])
					a[2] += uint32(m.Cr[ci])
				}
			}
		}
	case *image.RGBA:
		add = func(y int, acc []uint32) {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for ox, x := 0, 0; x < w; ox++ {
				a := acc[ox*4 : ox*4+4]
				for end := min(x+k, w); x < end; x++ {
					s := p[x*4 : x*4+4]
					a[0] += uint32(s[0])
					a[1] += uint32(s[1])
					a[2] += uint32(s[2])
					a[3] += uint32(s[3])
				}
			}
		}
	case *image.NRGBA:
		// Premultiply, so transparent pixels lend no colour; sums are in
		// units of 1/255.
		add = func(y int, acc []uint32) {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for ox, x := 0, 0; x < w; ox++ {
				a := acc[ox*4 : ox*4+4]
				for end := min(x+k, w); x < end; x++ {
					s := p[x*4 : x*4+4]
					al := uint32(s[3])
					a[0] += uint32(s[0]) * al
					a[1] += uint32(s[1]) * al
					a[2] += uint32(s[2]) * al
					a[3] += al * 255
				}
			}
		}
	case *image.Gray:
		add = func(y int, acc []uint32) {
			p := m.Pix[m.PixOffset(b.Min.X, y):]
			for ox, x := 0, 0; x < w; ox++ {
				var sum uint32
				for end := min(x+k, w); x < end; x++ {
					sum += uint32(p[x])
				}
				acc[ox*4] += sum
			}
		}
	default:
		return nil, false
	}

	// A premultiplied NRGBA block sums up to k² × 255², which fits a
	// uint32 while k ≤ 256 (sides over 160 000 pixels for a 320 pixel
	// thumbnail).
	if k < 2 || k > 256 {
		return nil, false
	}
	out = image.NewRGBA(image.Rect(0, 0, ow, oh))
	acc := make([]uint32, ow*4)
	for oy := range oh {
		clear(acc)
		y0, y1 := b.Min.Y+oy*k, min(b.Min.Y+(oy+1)*k, b.Max.Y)
		for y := y0; y < y1; y++ {
			add(y, acc)
		}
		rows := uint32(y1 - y0)               //nolint:gosec // 1..k
		row := out.Pix[out.PixOffset(0, oy):] // 4 bytes per pixel
		for ox := range ow {
			cols := uint32(min(k, w-ox*k)) //nolint:gosec // 1..k
			n := rows * cols
			a, d := acc[ox*4:ox*4+4], row[ox*4:ox*4+4]
			switch img.(type) {
			case *image.YCbCr:
				d[0], d[1], d[2] = color.YCbCrToRGB(uint8(a[0]/n), uint8(a[1]/n), uint8(a[2]/n)) //nolint:gosec // means of bytes
				d[3] = 0xff
			case *image.RGBA:
				d[0], d[1], d[2], d[3] = uint8(a[0]/n), uint8(a[1]/n), uint8(a[2]/n), uint8(a[3]/n) //nolint:gosec // means of bytes
			case *image.NRGBA:
				n *= 255
				d[0], d[1], d[2], d[3] = uint8(a[0]/n), uint8(a[1]/n), uint8(a[2]/n), uint8(a[3]/n) //nolint:gosec // means of bytes
			case *image.Gray:
				v := uint8(a[0] / n) //nolint:gosec // mean of bytes
				d[0], d[1], d[2], d[3] = v, v, v, 0xff
			}
		}
	}
	return out, true
}
