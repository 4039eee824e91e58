package media

import (
	"encoding/binary"
	"image"
	"io"
)

// JPEG markers that matter when looking for EXIF.
const (
	markerSOI  = 0xd8
	markerEOI  = 0xd9
	markerSOS  = 0xda
	markerAPP1 = 0xe1
	// exifOrientationTag is TIFF tag 0x0112 in IFD0.
	exifOrientationTag = 0x0112
	// maxExifScan bounds how many segment bytes are skipped looking for
	// EXIF: it comes first in practice, right after SOI and JFIF.
	maxExifScan = 1 << 20
)

// jpegOrientation returns the EXIF orientation (1–8) of the JPEG in r, or
// 1 (upright) when there is none or it cannot be read. It reads only the
// segments before the image data.
func jpegOrientation(r io.Reader) int {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:2]); err != nil || hdr[0] != 0xff || hdr[1] != markerSOI {
		return 1
	}
	scanned := 0
	for scanned < maxExifScan {
		if _, err := io.ReadFull(r, hdr[:2]); err != nil || hdr[0] != 0xff {
			return 1
		}
		m := hdr[1]
		for m == 0xff { // fill bytes
			if _, err := io.ReadFull(r, hdr[1:2]); err != nil {
				return 1
			}
			m = hdr[1]
		}
		switch {
		case m == markerSOS || m == markerEOI || (m >= 0xc0 && m <= 0xcf && m != 0xc4 && m != 0xc8 && m != 0xcc):
			// Image data or a frame header: EXIF, if any, came before.
			return 1
		case m == 0x01 || (m >= 0xd0 && m <= 0xd7):
			continue // markers without a length
		}
		if _, err := io.ReadFull(r, hdr[2:4]); err != nil {
			return 1
		}
		n := int(binary.BigEndian.Uint16(hdr[2:4])) - 2
		if n < 0 {
			return 1
		}
		scanned += n
		if m != markerAPP1 {
			if _, err := io.CopyN(io.Discard, r, int64(n)); err != nil {
				return 1
			}
			continue
		}
		seg := make([]byte, n)
		if _, err := io.ReadFull(r, seg); err != nil {
			return 1
		}
		if len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
	}
	return 1
}

// tiffOrientation reads the orientation tag from IFD0 of a TIFF header
// (the body of an EXIF segment); 1 when absent or malformed.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return 1
	}
	var bo binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		bo = binary.LittleEndian
	case "MM":
		bo = binary.BigEndian
	default:
		return 1
	}
	if bo.Uint16(t[2:4]) != 42 {
		return 1
	}
	ifd := int64(bo.Uint32(t[4:8]))
	if ifd < 8 || ifd+2 > int64(len(t)) {
		return 1
	}
	count := int64(bo.Uint16(t[ifd:]))
	for i := range count {
		e := ifd + 2 + 12*i
		if e+12 > int64(len(t)) {
			return 1
		}
		if bo.Uint16(t[e:]) != exifOrientationTag {
			continue
		}
		// Type SHORT (3), one value, stored in the entry's first two
		// value bytes.
		if bo.Uint16(t[e+2:]) != 3 || bo.Uint32(t[e+4:]) != 1 {
			return 1
		}
		if o := int(bo.Uint16(t[e+8:])); o >= 1 && o <= 8 {
			return o
		}
		return 1
	}
	return 1
}

// orient turns img, stored with EXIF orientation o, upright. Orientations
// 5–8 swap width and height. img is returned as is for 1 (or unknown).
func orient(img *image.RGBA, o int) *image.RGBA {
	if o < 2 || o > 8 {
		return img
	}
	w, h := img.Rect.Dx(), img.Rect.Dy()
	ow, oh := w, h
	if o >= 5 {
		ow, oh = h, w
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for y := range h {
		for x := range w {
			var dx, dy int
			switch o {
			case 2: // mirrored
				dx, dy = w-1-x, y
			case 3: // rotated 180°
				dx, dy = w-1-x, h-1-y
			case 4: // flipped
				dx, dy = x, h-1-y
			case 5: // transposed
				dx, dy = y, x
			case 6: // needs 90° clockwise
				dx, dy = h-1-y, x
			case 7: // transverse
				dx, dy = h-1-y, w-1-x
			case 8: // needs 90° counter-clockwise
				dx, dy = y, w-1-x
			}
			si := img.PixOffset(img.Rect.Min.X+x, img.Rect.Min.Y+y)
			di := out.PixOffset(dx, dy)
			copy(out.Pix[di:di+4], img.Pix[si:si+4])
		}
	}
	return out
}
