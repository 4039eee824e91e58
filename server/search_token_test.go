package server

import (
	"encoding/base64"
	"encoding/binary"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// Page tokens carry the tier and the cursor through a round trip; tokens
// of version 1 (before the archive) continue in the window; a token with
// an unknown tier or trailing bytes is refused.
func TestSearchTokenRoundTrip(t *testing.T) {
	const fp = 0x1234_5678_9abc_def0
	at := time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
	for _, pos := range []searchPosition{
		{tier: tierWindow, cursor: &storage.SearchCursor{CreatedAt: at, ConversationID: "c1", Seq: 7}},
		{tier: tierArchive, cursor: &storage.SearchCursor{CreatedAt: at, ConversationID: "c2", Seq: 1 << 40}},
		{tier: tierArchiveStart},
	} {
		got, err := decodeSearchToken(encodeSearchToken(pos, fp), fp)
		require.NoError(t, err)
		require.Equal(t, pos, got)
		_, err = decodeSearchToken(encodeSearchToken(pos, fp), fp+1)
		require.ErrorIs(t, err, errSearchOtherQuery)
	}

	v1 := []byte{1}
	v1 = binary.BigEndian.AppendUint64(v1, fp)
	v1 = binary.AppendVarint(v1, at.UnixMilli())
	v1 = binary.AppendUvarint(v1, 9)
	v1 = append(v1, "c3"...)
	got, err := decodeSearchToken(base64.RawURLEncoding.EncodeToString(v1), fp)
	require.NoError(t, err)
	require.Equal(t, searchPosition{tier: tierWindow, cursor: &storage.SearchCursor{CreatedAt: at, ConversationID: "c3", Seq: 9}}, got)

	bad := func(b []byte) {
		t.Helper()
		_, err := decodeSearchToken(base64.RawURLEncoding.EncodeToString(b), fp)
		require.ErrorIs(t, err, errSearchBadToken)
	}
	head := binary.BigEndian.AppendUint64([]byte{searchTokenVersion}, fp)
	bad(head)                                                         // no tier
	bad(append(append([]byte{}, head...), 9))                         // unknown tier
	bad(append(append([]byte{}, head...), byte(tierArchiveStart), 1)) // a start with a cursor
	bad(append(append([]byte{}, head...), byte(tierArchive)))         // a cursor missing
}
