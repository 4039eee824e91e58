package clickhouse_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// A message recalled in the millisecond it was created: whichever order
// its two states reach the archive in (a replay of the first after the
// recall), readers see the recalled one, without content or text.
func TestArchiveMessagesRecallOutranksSameMillisecond(t *testing.T) {
	t.Parallel()
	for _, recalledFirst := range []bool{false, true} {
		db, _ := newDB(t)
		at := time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
		sent := storage.Message{ID: "m1", ConversationID: "c", Seq: 1, SenderID: "u", Kind: storage.MessageText,
			Body: []byte("secret"), CreatedAt: at}
		recalled := sent
		recalled.Body, recalled.RecalledAt = nil, at
		states := [][]storage.ArchiveRecord{{{Message: sent, SearchText: "secret"}}, {{Message: recalled}}}
		if recalledFirst {
			states[0], states[1] = states[1], states[0]
		}
		for _, s := range states {
			require.NoError(t, db.ArchiveMessages(t.Context(), s))
		}
		got, err := db.Messages(t.Context(), "c", 1, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 1)
		require.Nil(t, got[0].Body, "recalled first: %v", recalledFirst)
		require.Empty(t, got[0].SearchText, "recalled first: %v", recalledFirst)
		require.Equal(t, at, got[0].RecalledAt)
	}
}
