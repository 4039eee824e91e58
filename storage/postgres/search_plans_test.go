package postgres_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
)

// TestSearchPlansAgree: SearchMessages picks its plan by how many
// messages match in the whole index (see fewMatches); both plans must
// find the same hits, in the same order, page after page. "alpha" is in
// every message (the walk of the search order), "beta" in a tenth (the
// index first); a conversation the searcher is not in, and one they
// joined late, hold matches too.
func TestSearchPlansAgree(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := open(t, pg.NewSchema(t))
	a, b := user(t, s, "a"), user(t, s, "b")
	base := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	groups := []string{"mine", "theirs", "late"}
	for _, g := range groups {
		members := []string{b.ID}
		if g == "theirs" {
			members = nil
		}
		_, _, err := s.CreateGroup(ctx, storage.NewGroup{ID: g, OwnerID: a.ID, MemberIDs: members, CreatedAt: base,
			Notice: notice(a, "n-"+g, base)})
		require.NoError(t, err)
	}
	// b's join point in "late" moves past its first 200 messages: b leaves
	// and comes back.
	var msgs []storage.NewMessage
	for i := range 600 {
		g := groups[i%3]
		text := "alpha filler"
		if i%10 == 0 {
			text = "alpha beta"
		}
		msgs = append(msgs, storage.NewMessage{
			ID: fmt.Sprintf("m%d", i), ConversationID: g, SenderID: a.ID, ClientMsgID: fmt.Sprintf("c%d", i),
			Kind: storage.MessageText, Body: []byte(text), SearchText: text,
			// Pairs share a millisecond, so ties are ordered by the key.
			CreatedAt: base.Add(time.Duration(i/2) * time.Millisecond),
		})
	}
	_, err := s.AppendMessages(ctx, msgs)
	require.NoError(t, err)
	_, err = s.RemoveMember(ctx, "late", b.ID, notice(a, "n-out", base.Add(time.Second)))
	require.NoError(t, err)
	added, err := s.AddMembers(ctx, "late", []string{b.ID}, 0, notice(a, "n-in", base.Add(time.Second)))
	require.NoError(t, err)
	joined := added.Seq
	later := []storage.NewMessage{{ID: "after-join", ConversationID: "late", SenderID: a.ID, ClientMsgID: "after-join",
		Kind: storage.MessageText, Body: []byte("alpha beta"), SearchText: "alpha beta", CreatedAt: base.Add(2 * time.Second)}}
	_, err = s.AppendMessages(ctx, later)
	require.NoError(t, err)

	// What b may find, in the search order.
	want := func(word string) []storage.SearchCursor {
		var out []storage.SearchCursor
		seqs := map[string]uint64{}
		for _, m := range append(msgs, later...) {
			seqs[m.ConversationID]++
			seq := seqs[m.ConversationID] + 1 // the group's notice is seq 1
			if m.ConversationID == "late" && m.ID == "after-join" {
				seq = joined + 1
			}
			if m.ConversationID == "theirs" || (m.ConversationID == "late" && seq < joined) {
				continue
			}
			if word == "beta" && string(m.Body) != "alpha beta" {
				continue
			}
			out = append(out, storage.SearchCursor{CreatedAt: m.CreatedAt, ConversationID: m.ConversationID, Seq: seq})
		}
		slices.SortFunc(out, func(x, y storage.SearchCursor) int {
			if c := y.CreatedAt.Compare(x.CreatedAt); c != 0 {
				return c
			}
			if x.ConversationID != y.ConversationID {
				if x.ConversationID > y.ConversationID {
					return -1
				}
				return 1
			}
			return int(y.Seq) - int(x.Seq)
		})
		return out
	}
	for _, word := range []string{"alpha", "beta"} {
		var got []storage.SearchCursor
		q := storage.SearchQuery{UserID: b.ID, Terms: []string{word}, Limit: 17}
		for range 100 {
			hits, more, err := s.SearchMessages(ctx, q)
			require.NoError(t, err)
			for _, h := range hits {
				got = append(got, h.Cursor())
			}
			if !more {
				break
			}
			c := hits[len(hits)-1].Cursor()
			q.After = &c
		}
		w := want(word)
		require.Len(t, got, len(w), word)
		for i := range w {
			require.True(t, w[i].CreatedAt.Equal(got[i].CreatedAt) && w[i].ConversationID == got[i].ConversationID && w[i].Seq == got[i].Seq,
				"%s hit %d: want %+v, got %+v", word, i, w[i], got[i])
		}
	}
}
