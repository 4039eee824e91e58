package storagetest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/textsearch"
)

// BenchSearch fills s with n text messages spread over 50 groups of which
// the searcher is a member (and 50 of which they are not), each of 12
// words drawn from a 5,000-word vocabulary with a Zipf distribution (word
// 0 is in about one message in four, word 4999 in about one in 20,000),
// then calls settle (when not nil: e.g. to refresh the planner's
// statistics, as the backend's own maintenance would) and measures one
// search page (20 hits) per query shape. Backends call it from their own
// benchmarks:
//
//	go test -run '^$' -bench Search ./storage/embedded/ ./storage/postgres/
func BenchSearch(b *testing.B, s storage.Store, n int, settle func()) {
	ctx := b.Context()
	mk := func(id string) storage.User {
		u := storage.User{ID: id, Username: id, DisplayName: id, PasswordHash: "h", CreatedAt: at(0)}
		require.NoError(b, s.CreateUser(ctx, u))
		return u
	}
	searcher, other := mk("searcher"), mk("other")
	var mine, theirs []storage.Conversation
	for i := range 100 {
		owner, members := other, []string{searcher.ID}
		if i%2 == 1 {
			members = nil
		}
		c, _, err := s.CreateGroup(ctx, storage.NewGroup{
			ID: fmt.Sprintf("g%d", i), Title: "g", OwnerID: owner.ID, MemberIDs: members, CreatedAt: at(0),
			Notice: storage.NewMessage{ID: fmt.Sprintf("n%d", i), SenderID: owner.ID, Kind: storage.MessageSystem, CreatedAt: at(0)},
		})
		require.NoError(b, err)
		if members != nil {
			mine = append(mine, c)
		} else {
			theirs = append(theirs, c)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	zipf := rand.NewZipf(rng, 1.1, 1, 4999)
	const batch = 500
	for done := 0; done < n; done += batch {
		msgs := make([]storage.NewMessage, 0, batch)
		for i := done; i < min(done+batch, n); i++ {
			conv := mine[i%len(mine)]
			if i%2 == 1 {
				conv = theirs[i%len(theirs)]
			}
			words := make([]string, 12)
			for j := range words {
				words[j] = fmt.Sprintf("w%dx", zipf.Uint64())
			}
			text := strings.Join(words, " ")
			msgs = append(msgs, storage.NewMessage{
				ID: fmt.Sprintf("m%d", i), ConversationID: conv.ID, SenderID: other.ID, ClientMsgID: fmt.Sprintf("c%d", i),
				Kind: storage.MessageText, Body: []byte(text), SearchText: text, CreatedAt: at(i),
			})
		}
		res, err := s.AppendMessages(ctx, msgs)
		require.NoError(b, err)
		require.NoError(b, res[0].Err)
	}
	if settle != nil {
		settle()
	}
	for _, q := range []struct{ name, query, conv string }{
		{"common_word", "w0x", ""},
		{"mid_word", "w50x", ""},
		{"rare_word", "w4000x", ""},
		{"two_words", "w1x w2x", ""},
		{"prefix", "w12", ""},
		{"common_in_one_conversation", "w0x", mine[0].ID},
		{"no_match", "nothing", ""},
	} {
		b.Run(q.name, func(b *testing.B) {
			query := storage.SearchQuery{UserID: searcher.ID, Terms: textsearch.Terms(q.query), ConversationID: q.conv, Limit: 20}
			hits := 0
			for b.Loop() {
				page, _, err := s.SearchMessages(ctx, query)
				if err != nil {
					b.Fatal(err)
				}
				hits = len(page)
			}
			b.ReportMetric(float64(hits), "hits")
		})
	}
}
