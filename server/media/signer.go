package media

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Download URL layout.
const (
	// PathPrefix starts every signed download path; the media id follows.
	PathPrefix = "/media/"
	// variantThumb is the v= value naming the thumbnail.
	variantThumb = "thumb"
	// signContext separates these MACs from any other use of the key.
	signContext = "parley media url v1"
)

// Signer makes and checks short-lived signed download URLs, so that an
// <img> tag or a browser download works without an Authorization header:
// whoever holds the URL may fetch that media (or its thumbnail) until it
// expires. It is safe for concurrent use.
type Signer struct {
	key []byte
}

// NewSigner returns a Signer using key for HMAC-SHA256. The key should be
// 32 random bytes derived from the server's secret and shared by every
// server of a cluster; a shorter key weakens every signature. The key is
// copied.
func NewSigner(key []byte) *Signer {
	return &Signer{key: append([]byte(nil), key...)}
}

// Sign returns the path and query of a download URL for mediaID, valid
// until expires (to the second, rounded down):
//
//	/media/<id>?exp=<unix seconds>&sig=<base64url HMAC-SHA256>
//
// with "&v=thumb" appended for the thumbnail. The id is path-escaped. The
// signature covers the id, the variant and the expiry, so none of them
// can be changed.
func (s *Signer) Sign(mediaID string, thumb bool, expires time.Time) string {
	exp := expires.Unix()
	q := "?exp=" + strconv.FormatInt(exp, 10) + "&sig=" + base64.RawURLEncoding.EncodeToString(s.mac(mediaID, thumb, exp))
	if thumb {
		q += "&v=" + variantThumb
	}
	return PathPrefix + url.PathEscape(mediaID) + q
}

// Verify checks a request URL's path and query as produced by Sign and
// returns the media id and whether the thumbnail was asked for. Only the
// path and query are read (a reverse proxy's prefix must be stripped
// first). It returns ErrSignature when the URL is malformed, carries any
// query parameter Sign does not write (none could be trusted), or its
// signature does not match; ErrExpired when the signature is good but now
// is at or past the expiry.
func (s *Signer) Verify(u *url.URL, now time.Time) (mediaID string, thumb bool, err error) {
	// The escaped path, so that an id holding "/" (escaped by Sign) is
	// one segment.
	seg, ok := strings.CutPrefix(u.EscapedPath(), PathPrefix)
	if !ok || seg == "" || strings.Contains(seg, "/") {
		return "", false, fmt.Errorf("%w: path is not %s<id>", ErrSignature, PathPrefix)
	}
	id, err := url.PathUnescape(seg)
	if err != nil {
		return "", false, fmt.Errorf("%w: path: %w", ErrSignature, err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return "", false, fmt.Errorf("%w: query: %w", ErrSignature, err)
	}
	for k, vs := range q {
		if (k != "exp" && k != "sig" && k != "v") || len(vs) != 1 {
			return "", false, fmt.Errorf("%w: unexpected query parameter %q", ErrSignature, k)
		}
	}
	exp, err := strconv.ParseInt(q.Get("exp"), 10, 64)
	if err != nil {
		return "", false, fmt.Errorf("%w: bad exp", ErrSignature)
	}
	sig, err := base64.RawURLEncoding.DecodeString(q.Get("sig"))
	if err != nil {
		return "", false, fmt.Errorf("%w: bad sig encoding", ErrSignature)
	}
	switch v, ok := q["v"]; {
	case !ok:
	case v[0] == variantThumb:
		thumb = true
	default:
		return "", false, fmt.Errorf("%w: unknown variant", ErrSignature)
	}
	if !hmac.Equal(sig, s.mac(id, thumb, exp)) {
		return "", false, ErrSignature
	}
	if !now.Before(time.Unix(exp, 0)) {
		return "", false, fmt.Errorf("%w at %s", ErrExpired, time.Unix(exp, 0).UTC().Format(time.RFC3339))
	}
	return id, thumb, nil
}

// mac is HMAC-SHA256 over an unambiguous encoding of what a URL grants:
// the id is length-prefixed so no id can end where another begins.
func (s *Signer) mac(mediaID string, thumb bool, exp int64) []byte {
	m := hmac.New(sha256.New, s.key)
	var b [8]byte
	m.Write([]byte(signContext))
	binary.BigEndian.PutUint64(b[:], uint64(len(mediaID)))
	m.Write(b[:])
	m.Write([]byte(mediaID))
	variant := byte(0)
	if thumb {
		variant = 1
	}
	m.Write([]byte{variant})
	binary.BigEndian.PutUint64(b[:], uint64(exp)) //nolint:gosec // a bit pattern, not a quantity
	m.Write(b[:])
	return m.Sum(nil)
}
