package media_test

import (
	"bytes"
	"image/color"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/media"
)

func TestDetect(t *testing.T) {
	t.Parallel()
	zip := []byte("PK\x03\x04\x14\x00\x00\x00\x08\x00")
	tests := []struct {
		name string
		head []byte
		want string
	}{
		{"jpeg", encodeJPEG(t, photo(8, 8)), media.TypeJPEG},
		{"png", encodePNG(t, photo(8, 8)), media.TypePNG},
		{"gif", encodeGIF(t, photo(8, 8)), media.TypeGIF},
		{"webp", webpSolid(2, 2, color.NRGBA{A: 0xff}), media.TypeWebP},
		{"pdf", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj"), "application/pdf"},
		{"plain_text", []byte("see you at 8?\n"), "text/plain; charset=utf-8"},
		{"zip", zip, "application/zip"},
		{"gzip", []byte("\x1f\x8b\x08\x00\x00\x00\x00\x00"), "application/x-gzip"},
		{"seven_zip", []byte("7z\xbc\xaf\x27\x1c\x00\x04"), "application/x-7z-compressed"},
		{"unknown_binary", []byte("\x00\x01\x02\x03\xfe\xff\x10\x11"), media.TypeUnknown},
		{"empty", nil, media.TypeUnknown},
		// Names never matter: these could all arrive as "cat.jpg".
		{"pe_named_jpg", append([]byte("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff"), make([]byte, 64)...), "application/vnd.microsoft.portable-executable"},
		{"elf_named_jpg", []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00>\x00"), "application/x-elf"},
		{"html_named_jpg", []byte("<!DOCTYPE html><html><script>alert(1)</script>"), "text/html; charset=utf-8"},
		{"heic", []byte("\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic"), "image/heic"},
		{"m4a_not_video", []byte("\x00\x00\x00\x1cftypM4A \x00\x00\x00\x00M4A mp42isom"), "audio/mp4"},
		{"mp4", []byte("\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"), "video/mp4"},
		{"quicktime", []byte("\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  "), "video/quicktime"},
		// A text file that happens to start with "MZ" stays text.
		{"text_starting_mz", []byte("MZ was here\n"), "text/plain; charset=utf-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.want, media.Detect(tt.head))
		})
	}
}

func TestDetectLooksAtFirst512Bytes(t *testing.T) {
	t.Parallel()
	text := bytes.Repeat([]byte("a"), 512)
	// Binary after the sniffed prefix does not change the answer.
	require.Equal(t, "text/plain; charset=utf-8", media.Detect(append(text, 0, 1, 2)))
}

func TestIsImage(t *testing.T) {
	t.Parallel()
	for ct, want := range map[string]bool{
		"image/jpeg":                true,
		"image/png":                 true,
		"image/gif":                 true,
		"image/webp":                true,
		"IMAGE/PNG; foo=bar":        true,
		"image/heic":                false, // named, but not decoded here
		"image/svg+xml":             false,
		"text/plain; charset=utf-8": false,
		"":                          false,
	} {
		require.Equal(t, want, media.IsImage(ct), ct)
	}
}
