package media_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/media"
)

var signKey = []byte("0123456789abcdef0123456789abcdef")

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return u
}

func TestSignerRoundTrip(t *testing.T) {
	t.Parallel()
	s := media.NewSigner(signKey)
	now := time.Unix(1_800_000_000, 0)
	for _, id := range []string{"01J9Z3K7QX", "a b/c?d&e=f%", "ünïcødé"} {
		for _, thumb := range []bool{false, true} {
			raw := s.Sign(id, thumb, now.Add(5*time.Minute))
			require.True(t, strings.HasPrefix(raw, "/media/"), raw)
			require.Equal(t, thumb, strings.HasSuffix(raw, "&v=thumb"), raw)
			gotID, gotThumb, err := s.Verify(mustParse(t, raw), now)
			require.NoError(t, err, raw)
			require.Equal(t, id, gotID)
			require.Equal(t, thumb, gotThumb)
			// Also through a full URL, as a handler sees r.URL.
			_, _, err = s.Verify(mustParse(t, "https://chat.example"+raw), now)
			require.NoError(t, err)
		}
	}
}

func TestSignerRefuses(t *testing.T) {
	t.Parallel()
	s := media.NewSigner(signKey)
	now := time.Unix(1_800_000_000, 0)
	exp := now.Add(time.Minute)
	good := s.Sign("m1", false, exp)
	thumb := s.Sign("m1", true, exp)
	sig := mustParse(t, good).Query().Get("sig")
	flipped := []byte(sig)
	flipped[0] ^= 1
	tests := []struct {
		name string
		raw  string
		now  time.Time
		want error
	}{
		{"tampered_id", strings.Replace(good, "/media/m1", "/media/m2", 1), now, media.ErrSignature},
		{"thumb_added", good + "&v=thumb", now, media.ErrSignature},
		{"thumb_removed", strings.TrimSuffix(thumb, "&v=thumb"), now, media.ErrSignature},
		{"unknown_variant", strings.Replace(thumb, "v=thumb", "v=full", 1), now, media.ErrSignature},
		{"expiry_extended", strings.Replace(good, "exp=1800000060", "exp=1900000060", 1), now, media.ErrSignature},
		{"sig_flipped", strings.Replace(good, sig, string(flipped), 1), now, media.ErrSignature},
		{"sig_missing", "/media/m1?exp=1800000060", now, media.ErrSignature},
		{"sig_not_base64", "/media/m1?exp=1800000060&sig=!!", now, media.ErrSignature},
		{"exp_missing", "/media/m1?sig=" + sig, now, media.ErrSignature},
		{"extra_param", good + "&download=1", now, media.ErrSignature},
		{"duplicate_exp", good + "&exp=1800000060", now, media.ErrSignature},
		{"other_key", media.NewSigner([]byte("another key, another server......")).Sign("m1", false, exp), now, media.ErrSignature},
		{"wrong_path", strings.Replace(good, "/media/", "/files/", 1), now, media.ErrSignature},
		{"nested_path", strings.Replace(good, "/media/m1", "/media/m1/x", 1), now, media.ErrSignature},
		{"empty_id", strings.Replace(good, "/media/m1", "/media/", 1), now, media.ErrSignature},
		{"expired_at_exp", good, exp, media.ErrExpired},
		{"expired_later", thumb, exp.Add(time.Hour), media.ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, _, err := s.Verify(mustParse(t, tt.raw), tt.now)
			require.ErrorIs(t, err, tt.want)
		})
	}
	// A second before expiry it is still good.
	_, _, err := s.Verify(mustParse(t, good), exp.Add(-time.Second))
	require.NoError(t, err)
}

func TestNewSignerCopiesKey(t *testing.T) {
	t.Parallel()
	key := append([]byte(nil), signKey...)
	s := media.NewSigner(key)
	now := time.Unix(1_800_000_000, 0)
	raw := s.Sign("m1", false, now.Add(time.Minute))
	key[0] ^= 0xff
	_, _, err := s.Verify(mustParse(t, raw), now)
	require.NoError(t, err)
}
