package media

import (
	"bytes"
	"net/http"
	"strings"
)

// sniffLen is how many leading bytes Detect looks at, as net/http does.
const sniffLen = 512

// Content types Detect names beyond net/http, and the images this package
// decodes.
const (
	TypeJPEG = "image/jpeg"
	TypePNG  = "image/png"
	TypeGIF  = "image/gif"
	TypeWebP = "image/webp"
	// TypeUnknown is any binary Detect cannot name.
	TypeUnknown = "application/octet-stream"
)

// magic is a signature net/http.DetectContentType does not know; it is
// consulted only when net/http answers TypeUnknown, so it never turns
// text into binary.
type magic struct {
	prefix string
	ct     string
}

var magics = []magic{
	// Executables: name them, so a ".jpg" that is a program is not
	// served as an opaque blob a user may be tricked into running.
	{"\x7fELF", "application/x-elf"},
	{"MZ", "application/vnd.microsoft.portable-executable"},
	{"\xfe\xed\xfa\xce", "application/x-mach-binary"},
	{"\xfe\xed\xfa\xcf", "application/x-mach-binary"},
	{"\xce\xfa\xed\xfe", "application/x-mach-binary"},
	{"\xcf\xfa\xed\xfe", "application/x-mach-binary"},
	// Archives net/http misses (it knows zip, gzip and rar).
	{"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"},
	{"BZh", "application/x-bzip2"},
	{"\xfd7zXZ\x00", "application/x-xz"},
	{"\x28\xb5\x2f\xfd", "application/zstd"},
}

// ftypBrands names ISO media files (the "ftyp" box) by their major brand.
// net/http knows only brands starting "mp4" and calls everything with one
// among its compatible brands video/mp4, so iPhone photos (HEIC) come out
// unknown and M4A audio comes out as video.
var ftypBrands = map[string]string{
	"heic": "image/heic", "heix": "image/heic", "heim": "image/heic", "heis": "image/heic",
	"hevc": "image/heic-sequence", "hevx": "image/heic-sequence",
	"mif1": "image/heif", "msf1": "image/heif-sequence",
	"avif": "image/avif", "avis": "image/avif",
	"qt  ": "video/quicktime",
	"M4A ": "audio/mp4", "M4B ": "audio/mp4",
	"3gp4": "video/3gpp", "3gp5": "video/3gpp", "3gp6": "video/3gpp",
}

// Detect names the content type of a file from its first bytes (it looks
// at no more than 512), never from what the client claims. It answers as
// net/http.DetectContentType does (so text keeps its "; charset=utf-8"
// parameter), corrected for what matters to chat uploads: HEIC/HEIF/AVIF
// photos, QuickTime and M4A, executables and a few archives are named;
// WebP is image/webp; empty or unrecognised binary content is
// TypeUnknown. A file's name plays no part: an executable or HTML page
// named ".jpg" is detected as what it is. Safe for concurrent use.
func Detect(head []byte) string {
	if len(head) > sniffLen {
		head = head[:sniffLen]
	}
	if len(head) == 0 {
		return TypeUnknown
	}
	if ct, ok := detectFtyp(head); ok {
		return ct
	}
	// net/http matches WebP only when "WEBPVP" follows the RIFF header,
	// which every WebP (VP8, VP8L, VP8X) has; say so explicitly so the
	// decodable image types do not depend on its table.
	if len(head) >= 12 && string(head[:4]) == "RIFF" && string(head[8:12]) == "WEBP" {
		return TypeWebP
	}
	ct := http.DetectContentType(head)
	if ct != TypeUnknown {
		return ct
	}
	for _, m := range magics {
		if bytes.HasPrefix(head, []byte(m.prefix)) {
			return m.ct
		}
	}
	return TypeUnknown
}

// IsImage reports whether contentType is one this package decodes and
// thumbnails: JPEG, PNG, GIF or WebP. Parameters and case are ignored.
func IsImage(contentType string) bool {
	switch mediaType(contentType) {
	case TypeJPEG, TypePNG, TypeGIF, TypeWebP:
		return true
	}
	return false
}

// mediaType strips parameters and case from a content type.
func mediaType(contentType string) string {
	t, _, _ := strings.Cut(contentType, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// detectFtyp names an ISO base media file by the major brand of its
// leading ftyp box.
func detectFtyp(head []byte) (string, bool) {
	if len(head) < 12 || string(head[4:8]) != "ftyp" {
		return "", false
	}
	ct, ok := ftypBrands[string(head[8:12])]
	return ct, ok
}
