package main

import (
	"bytes"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/embedded"
	"github.com/parley-im/parley/storage/storagetest/realsvc"
)

// parleyd with a one-second window: once the archive has the messages,
// they leave the store, and GetHistory and SearchMessages read across the
// seam without the client noticing: every page, both directions, equals
// what the store served before the trim, and search pages from the
// window into the archive without a repeat or a gap.
func TestHistoryAndSearchCrossTheWindow(t *testing.T) {
	t.Parallel()
	ch := realsvc.StartClickHouseTB(t)
	ts := startServerEnv(t, map[string]string{
		"PARLEY_CHAT_RECALL_WINDOW":              "500ms",
		"PARLEY_ARCHIVE_ENABLED":                 "true",
		"PARLEY_ARCHIVE_INTERVAL":                "10ms",
		"PARLEY_ARCHIVE_BATCH_SIZE":              "7",
		"PARLEY_ARCHIVE_HOT_WINDOW":              "1s",
		"PARLEY_ARCHIVE_TRIM_INTERVAL":           "20ms",
		"PARLEY_ARCHIVE_CLICKHOUSE_ADDRS":        ch.Addr(),
		"PARLEY_ARCHIVE_CLICKHOUSE_DATABASE":     ch.NewDatabase(t),
		"PARLEY_ARCHIVE_CLICKHOUSE_CALL_TIMEOUT": "10s",
	})
	ctx := t.Context()
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	cid := direct(t, alice, bob)
	const n = 40
	for i := range n {
		text := fmt.Sprintf("alpha %d", i)
		if i == 3 {
			text = "the needle in the archive"
		}
		say(t, alice, cid, fmt.Sprintf("a-%d", i), text)
		if i == 4 {
			// Seq 5, recalled before it leaves the store: the archive has
			// no text for it. The notice takes seq 6.
			_, err := alice.chat.RecallMessage(ctx, &parleyv1.RecallMessageRequest{ConversationId: cid, Seq: 5})
			require.NoError(t, err)
		}
	}

	before := readAll(t, bob, cid, parleyv1.HistoryDirection_HISTORY_DIRECTION_BEFORE, 200)
	require.Len(t, before, n+1, "the messages and the recall notice")

	// Everything but the newest message leaves the store (the newest
	// stays for the conversation list).
	require.Eventually(t, func() bool {
		_, samples := scrape(t, ts.adminURL)
		return samples["parley_archive_trimmed_messages_total"] == n
	}, 60*time.Second, 20*time.Millisecond)

	for _, limit := range []uint32{1, 7, 40, 200} {
		for _, dir := range []parleyv1.HistoryDirection{parleyv1.HistoryDirection_HISTORY_DIRECTION_BEFORE, parleyv1.HistoryDirection_HISTORY_DIRECTION_AFTER} {
			got := readAll(t, bob, cid, dir, limit)
			require.Len(t, got, len(before), "limit %d %s", limit, dir)
			for i := range got {
				require.True(t, proto.Equal(before[i], got[i]), "limit %d %s seq %d:\n%v\n%v", limit, dir, before[i].GetSeq(), before[i], got[i])
			}
		}
	}

	// Search: the needle only the archive has; "alpha" across both, in
	// pages of 6 (one hit in the window, the rest archived); the recalled
	// message's words are gone.
	res, err := bob.chat.SearchMessages(ctx, &parleyv1.SearchMessagesRequest{Query: "needle"})
	require.NoError(t, err)
	require.Len(t, res.GetResults(), 1)
	require.Equal(t, uint64(4), res.GetResults()[0].GetSeq())
	require.Contains(t, res.GetResults()[0].GetSnippet(), "needle")
	seen := map[uint64]bool{}
	token := ""
	for {
		res, err := bob.chat.SearchMessages(ctx, &parleyv1.SearchMessagesRequest{Query: "alpha", PageSize: 6, PageToken: token})
		require.NoError(t, err)
		for _, r := range res.GetResults() {
			require.False(t, seen[r.GetSeq()], "seq %d twice", r.GetSeq())
			seen[r.GetSeq()] = true
		}
		if token = res.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Len(t, seen, n-2, "every alpha but the needle and the recalled one")
	require.False(t, seen[5], "recalled")

	// A message that left the store cannot be recalled any more.
	_, err = alice.chat.RecallMessage(ctx, &parleyv1.RecallMessageRequest{ConversationId: cid, Seq: 2})
	require.Equal(t, connect.CodeNotFound, connect.CodeOf(err), "%v", err)

	// ClickHouse down: the window still answers; what needs the archive
	// is Unavailable, never a short page.
	require.NoError(t, ch.Halt())
	page, err := bob.chat.GetHistory(ctx, &parleyv1.GetHistoryRequest{ConversationId: cid, Direction: parleyv1.HistoryDirection_HISTORY_DIRECTION_BEFORE, Limit: 1})
	require.NoError(t, err)
	require.Equal(t, []uint64{n + 1}, seqsOf(page.GetMessages()))
	require.True(t, page.GetHasMore())
	_, err = bob.chat.GetHistory(ctx, &parleyv1.GetHistoryRequest{ConversationId: cid, Direction: parleyv1.HistoryDirection_HISTORY_DIRECTION_BEFORE, Limit: 5})
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "%v", err)
	first, err := bob.chat.SearchMessages(ctx, &parleyv1.SearchMessagesRequest{Query: "alpha", PageSize: 1})
	require.NoError(t, err, "the window's hit stands")
	require.Len(t, first.GetResults(), 1)
	require.NotEmpty(t, first.GetNextPageToken(), "the archive's part is still to come")
	_, err = bob.chat.SearchMessages(ctx, &parleyv1.SearchMessagesRequest{Query: "alpha", PageSize: 1, PageToken: first.GetNextPageToken()})
	require.Equal(t, connect.CodeUnavailable, connect.CodeOf(err), "%v", err)
	ts.stop(t)
}

func seqsOf(ms []*parleyv1.Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.GetSeq()
	}
	return out
}

// readAll pages through the whole conversation in dir, limit messages a
// page, and returns it oldest first.
func readAll(t *testing.T, u *user, cid string, dir parleyv1.HistoryDirection, limit uint32) []*parleyv1.Message {
	t.Helper()
	var all []*parleyv1.Message
	anchor := uint64(0)
	for range 10_000 {
		res, err := u.chat.GetHistory(t.Context(), &parleyv1.GetHistoryRequest{ConversationId: cid, AnchorSeq: anchor, Direction: dir, Limit: limit})
		require.NoError(t, err)
		page := res.GetMessages()
		require.LessOrEqual(t, len(page), int(limit))
		if dir == parleyv1.HistoryDirection_HISTORY_DIRECTION_BEFORE {
			all = append(append([]*parleyv1.Message(nil), page...), all...)
			if len(page) > 0 {
				anchor = page[0].GetSeq()
			}
		} else {
			all = append(all, page...)
			if len(page) > 0 {
				anchor = page[len(page)-1].GetSeq()
			}
		}
		if !res.GetHasMore() {
			for i := 1; i < len(all); i++ {
				require.Equal(t, all[i-1].GetSeq()+1, all[i].GetSeq(), "contiguous")
			}
			return all
		}
		require.NotEmpty(t, page, "has_more with an empty page")
	}
	t.Fatal("history did not end")
	return nil
}

// "parleyd archive-off" switches the outbox of a store that had the
// archive on: refused while the configuration still enables it; then the
// outbox is empty and stays empty as messages are sent.
func TestArchiveOff(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	env := map[string]string{
		"PARLEY_ARCHIVE_ENABLED":                 "true",
		"PARLEY_ARCHIVE_INTERVAL":                "10ms",
		"PARLEY_ARCHIVE_CLICKHOUSE_ADDRS":        "127.0.0.1:1", // nothing there: batches fail, the outbox keeps them
		"PARLEY_ARCHIVE_CLICKHOUSE_DIAL_TIMEOUT": "100ms",
	}
	ts := startServerEnv(t, env, "-data-dir", dir)
	hc := h2cClient()
	alice := register(t, hc, ts.url, "alice")
	bob := register(t, hc, ts.url, "bob")
	cid := direct(t, alice, bob)
	say(t, alice, cid, "1", "queued")
	require.Eventually(t, func() bool {
		_, samples := scrape(t, ts.adminURL)
		return samples["parley_archive_batch_failures_total"] >= 1
	}, 30*time.Second, 10*time.Millisecond, "the archiver enabled the outbox and failed to write")
	ts.stop(t)

	var out bytes.Buffer
	err := archiveOff(t.Context(), []string{"-data-dir", dir}, func(k string) string { return env[k] }, &out, &out)
	require.ErrorContains(t, err, "archive.enabled is set")
	require.NoError(t, archiveOff(t.Context(), []string{"-data-dir", dir}, func(string) string { return "" }, &out, &out))
	require.Contains(t, out.String(), "the archive outbox is off and empty")

	s, err := embedded.Open(t.Context(), embedded.Config{Path: filepath.Join(dir, "parley.db")})
	require.NoError(t, err)
	defer s.Close()
	es, err := s.ReadOutbox(t.Context(), 10)
	require.NoError(t, err)
	require.Empty(t, es)
	_, err = s.AppendMessages(t.Context(), []storage.NewMessage{{ID: "m-after", ConversationID: cid,
		SenderID: alice.id, ClientMsgID: "after", Kind: storage.MessageText, Body: []byte("x"), CreatedAt: time.Now()}})
	require.NoError(t, err)
	es, err = s.ReadOutbox(t.Context(), 10)
	require.NoError(t, err)
	require.Empty(t, es, "nothing is queued any more")
}
