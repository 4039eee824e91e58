package clickhouse_test

import (
	"fmt"
	"strings"
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

// TestEraseRecalledRemovesEarlierStatesFromDisk: after EraseRecalled,
// the earlier states of recalled messages are gone from disk (not just
// from readers), the recalled states stay, and messages that were not
// recalled keep their content. (Merges cannot be stopped to rule them
// out: that stops mutations too. The mutation is checked for instead.)
func TestEraseRecalledRemovesEarlierStatesFromDisk(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, name := newDB(t)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	var sent []storage.ArchiveRecord
	for seq := uint64(1); seq <= 3; seq++ {
		m := storage.Message{ID: fmt.Sprintf("m%d", seq), ConversationID: "c", Seq: seq, SenderID: "u",
			Kind: storage.MessageText, Body: []byte("secret"), CreatedAt: at}
		sent = append(sent, storage.ArchiveRecord{Message: m, SearchText: "secret"})
	}
	require.NoError(t, db.ArchiveMessages(ctx, sent))
	withContent := func(seq int) string {
		n, err := server.Query(ctx, fmt.Sprintf("SELECT count() FROM %s.messages WHERE seq = %d AND (body != '' OR search_text != '')", name, seq))
		require.NoError(t, err)
		return strings.TrimSpace(n)
	}
	require.Equal(t, "1", withContent(2))

	// Seqs 2 and 3 recalled (in one batch with seq 1 unchanged).
	batch := []storage.ArchiveRecord{sent[0]}
	for _, r := range sent[1:] {
		m := r.Message
		m.Body, m.RecalledAt = nil, at.Add(time.Minute)
		batch = append(batch, storage.ArchiveRecord{Message: m})
	}
	require.NoError(t, db.ArchiveMessages(ctx, batch))
	require.NoError(t, db.EraseRecalled(ctx))
	require.Eventually(t, func() bool { return withContent(2) == "0" && withContent(3) == "0" }, 30*time.Second, 20*time.Millisecond,
		"the recalled content is still on disk")
	mutations, err := server.Query(ctx, "SELECT count() FROM system.mutations WHERE database = '"+name+"' AND is_done = 1")
	require.NoError(t, err)
	require.Equal(t, "1", strings.TrimSpace(mutations), "one mutation erased both")
	require.NotEqual(t, "0", withContent(1), "the message that was not recalled keeps its content")
	for _, seq := range []int{2, 3} {
		raw, err := server.Query(ctx, fmt.Sprintf("SELECT count() FROM %s.messages WHERE seq = %d", name, seq))
		require.NoError(t, err)
		require.Equal(t, "1", strings.TrimSpace(raw), "the recalled state itself stays")
	}
}
