package clickhouse_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-im/parley/storage"
	"github.com/parley-im/parley/storage/clickhouse"
	"github.com/parley-im/parley/storage/textsearch"
)

// The archive at one million messages: 10,000 conversations, about 100
// messages each, written in time order over a year as the archiver would
// (batches of 5000, its default), texts of 5 to 30 words drawn from a
// Zipf-distributed vocabulary of 300 words (four with diacritics), with
// one message in 50 carrying one of 1000 rare words. docs/benchmarks.md has the results.
//
//	go test -run '^$' -bench 'Archive1M' ./storage/clickhouse/
const (
	bench1MMessages      = 1_000_000
	bench1MConversations = 10_000
	bench1MBatch         = 5000
	bench1MVocabulary    = 300
	bench1MRareWords     = 1000
)

// bench1MStart is when the benchmark archive's year starts.
var bench1MStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// corpus generates the benchmark archive, deterministically: the same
// messages in the same order on every run.
type corpus struct {
	rng     *rand.Rand
	zipf    *rand.Zipf
	vocab   []string
	rare    []string
	lastSeq []uint64       // per conversation index
	rareIn  map[int]string // a rare word of a conversation that has one
	written int
}

func newCorpus() *corpus {
	rng := rand.New(rand.NewPCG(1, 2))
	syllables := strings.Fields("ka lo mi ne su ta ri po ve da no fi ru sa te mo li ba ze gu ha ko")
	word := func(n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(syllables[rng.IntN(len(syllables))])
		}
		return b.String()
	}
	c := &corpus{rng: rng, lastSeq: make([]uint64, bench1MConversations), rareIn: map[int]string{}}
	seen := map[string]bool{}
	for len(c.vocab) < bench1MVocabulary-4 {
		if w := word(1 + rng.IntN(3)); !seen[w] {
			seen[w] = true
			c.vocab = append(c.vocab, w)
		}
	}
	// A few with diacritics, which the archive folds, among the less
	// frequent: Zipf draws the first words most.
	c.vocab = slices.Insert(c.vocab, 40, "café", "Crème", "naïve", "Ünïcode")
	for _, w := range c.vocab[40:44] {
		seen[w] = true
	}
	for len(c.rare) < bench1MRareWords {
		if w := "x" + word(3); !seen[w] {
			seen[w] = true
			c.rare = append(c.rare, w)
		}
	}
	c.zipf = rand.NewZipf(rng, 1.1, 1, bench1MVocabulary-1)
	return c
}

// next returns the next n messages of the timeline.
func (c *corpus) next(n int) []clickhouse.ArchivedMessage {
	step := 365 * 24 * time.Hour / bench1MMessages
	out := make([]clickhouse.ArchivedMessage, n)
	var b strings.Builder
	for i := range out {
		k := c.written + i
		conv := c.rng.IntN(bench1MConversations)
		c.lastSeq[conv]++
		seq := c.lastSeq[conv]
		b.Reset()
		words := 5 + c.rng.IntN(26)
		rareAt := -1
		if c.rng.IntN(50) == 0 {
			rareAt = c.rng.IntN(words)
		}
		for j := range words {
			if j > 0 {
				b.WriteByte(' ')
			}
			if j == rareAt {
				w := c.rare[c.rng.IntN(len(c.rare))]
				c.rareIn[conv] = w
				b.WriteString(w)
			} else {
				b.WriteString(c.vocab[c.zipf.Uint64()])
			}
		}
		b.WriteByte('.')
		text := b.String()
		id := benchConv(conv)
		out[i] = clickhouse.ArchivedMessage{
			ConversationID: id,
			Seq:            seq,
			ID:             fmt.Sprintf("%s-%d", id, seq),
			SenderID:       fmt.Sprintf("u%05d", c.rng.IntN(50_000)),
			SenderDeviceID: "d1",
			ClientMsgID:    fmt.Sprintf("k%d", k),
			Kind:           storage.MessageText,
			Body:           []byte(text),
			SearchText:     text,
			CreatedAt:      bench1MStart.Add(time.Duration(k)*step + time.Duration(c.rng.IntN(1000))*time.Millisecond),
		}
	}
	c.written += n
	return out
}

// benchConv is conversation i's id.
func benchConv(i int) string { return fmt.Sprintf("conv-%05d", i) }

// loadCorpus writes the whole corpus to db in batches of bench1MBatch.
// With b, only the writes are timed.
func loadCorpus(ctx context.Context, b *testing.B, db *clickhouse.DB) (*corpus, error) {
	c := newCorpus()
	for c.written < bench1MMessages {
		if b != nil {
			b.StopTimer()
		}
		batch := c.next(bench1MBatch)
		if b != nil {
			b.StartTimer()
		}
		if err := db.WriteMessages(ctx, batch); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// BenchmarkArchive1MWrite writes the million messages into a fresh table
// in batches of 5000 and reports messages/s. Generating the messages is
// not timed; deriving search_words (in WriteMessages) is.
func BenchmarkArchive1MWrite(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db, err := openTB(b, server.NewDatabase(b))
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := loadCorpus(ctx, b, db); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*bench1MMessages)/b.Elapsed().Seconds(), "msgs/s")
}

// archive1M is the loaded benchmark archive the read benchmarks share.
var archive1M struct {
	once   sync.Once
	db     *clickhouse.DB
	corpus *corpus
	err    error
}

// loaded1M loads the corpus once per test binary into its own database,
// merged (OPTIMIZE … FINAL) as an archive's older months would be.
func loaded1M(b *testing.B) (*clickhouse.DB, *corpus) {
	b.Helper()
	a := &archive1M
	a.once.Do(func() {
		ctx := context.Background()
		const name = "bench_archive_1m"
		if a.err = server.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+name); a.err != nil {
			return
		}
		// Not closed by a cleanup: shared by every read benchmark of the
		// binary, and gone with the server.
		if a.db, a.err = clickhouse.Open(ctx, testConfig(server, name)); a.err != nil {
			return
		}
		start := time.Now()
		if a.corpus, a.err = loadCorpus(ctx, nil, a.db); a.err != nil {
			return
		}
		loaded := time.Since(start)
		start = time.Now()
		if a.err = server.Exec(ctx, "OPTIMIZE TABLE "+name+".messages FINAL"); a.err != nil {
			return
		}
		var n uint64
		if n, a.err = a.db.Count(ctx); a.err == nil && n != bench1MMessages {
			a.err = fmt.Errorf("loaded %d messages, want %d", n, bench1MMessages)
		}
		b.Logf("loaded %d messages in %v, optimized in %v", n, loaded.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	})
	if a.err != nil {
		b.Fatal(a.err)
	}
	return a.db, a.corpus
}

// scopes are n conversations picked at random (seeded), each whole, and
// a rare word one of them has.
func (c *corpus) scopes(n int) ([]clickhouse.SearchScope, string) {
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	out := make([]clickhouse.SearchScope, 0, n)
	rare := ""
	for _, i := range rng.Perm(bench1MConversations)[:n] {
		out = append(out, clickhouse.SearchScope{ConversationID: benchConv(i), MinSeq: 1, MaxSeq: c.lastSeq[i]})
		if w, ok := c.rareIn[i]; ok && rare == "" {
			rare = w
		}
	}
	return out, rare
}

// BenchmarkArchive1MSearch searches the million messages for a 20-hit
// page: a typical user's 50 conversations and a heavy user's 1000, for
// the most common word, a rare word (one that one of the conversations
// has), a two-letter prefix, two words, a word typed without its
// diacritics ("CAFE" finds "café"), and a word that is not there.
// hits/op is the page's size.
func BenchmarkArchive1MSearch(b *testing.B) {
	db, c := loaded1M(b)
	ctx := context.Background()
	for _, scope := range []int{50, 1000} {
		scopes, rare := c.scopes(scope)
		for _, tc := range []struct {
			name  string
			query string
		}{
			{name: "common", query: c.vocab[0]},
			{name: "rare", query: rare},
			{name: "prefix", query: c.vocab[10][:2]},
			{name: "two_words", query: c.vocab[1] + " " + c.vocab[2]},
			{name: "folded", query: "CAFE"},
			{name: "no_match", query: "qqqzzz"},
		} {
			b.Run(fmt.Sprintf("scope_%d/%s", scope, tc.name), func(b *testing.B) {
				q := clickhouse.SearchQuery{Terms: textsearch.Terms(tc.query), Scopes: scopes, Limit: 20}
				var hits int
				for b.Loop() {
					page, _, err := db.SearchMessages(ctx, q)
					if err != nil {
						b.Fatal(err)
					}
					hits = len(page)
				}
				b.ReportMetric(float64(hits), "hits/op")
			})
		}
	}
}

// BenchmarkArchive1MHistory reads a 50-message Before page of one
// conversation: from the top, and from the middle.
func BenchmarkArchive1MHistory(b *testing.B) {
	db, c := loaded1M(b)
	ctx := context.Background()
	conv := 4242
	last := c.lastSeq[conv]
	for _, tc := range []struct {
		name   string
		anchor uint64
	}{
		{name: "top", anchor: 0},
		{name: "middle", anchor: last / 2},
	} {
		b.Run(tc.name, func(b *testing.B) {
			q := storage.HistoryQuery{ConversationID: benchConv(conv), Direction: storage.Before, Anchor: tc.anchor, Limit: 50}
			var n int
			for b.Loop() {
				page, _, err := db.History(ctx, q, last)
				if err != nil {
					b.Fatal(err)
				}
				n = len(page)
			}
			if want := min(50, int(last)); tc.anchor != 0 {
				want = min(50, int(tc.anchor)-1)
				if n != want {
					b.Fatalf("page of %d messages, want %d", n, want)
				}
			} else if n != want {
				b.Fatalf("page of %d messages, want %d", n, want)
			}
		})
	}
}

// BenchmarkArchive1MRecallErase measures EraseRecalled on the 1M table:
// one recalled message archived, then the mutation until the server
// reports it done. Each iteration recalls another message, of another
// conversation.
func BenchmarkArchive1MRecallErase(b *testing.B) {
	db, c := loaded1M(b)
	ctx := context.Background()
	i := 0
	for b.Loop() {
		conv := (i * 7919) % len(c.lastSeq)
		i++
		page, _, err := db.History(ctx, storage.HistoryQuery{ConversationID: benchConv(conv), Direction: storage.Before, Limit: 1}, c.lastSeq[conv])
		if err != nil || len(page) != 1 {
			b.Fatalf("message of %s: %v (%d)", benchConv(conv), err, len(page))
		}
		m := page[0]
		m.Body, m.RecalledAt = nil, m.CreatedAt.Add(time.Second)
		if err := db.ArchiveMessages(ctx, []storage.ArchiveRecord{{Message: m}}); err != nil {
			b.Fatal(err)
		}
		if err := db.EraseRecalled(ctx); err != nil {
			b.Fatal(err)
		}
		for {
			pending, err := server.Query(ctx, "SELECT count() FROM system.mutations WHERE database = 'bench_archive_1m' AND is_done = 0")
			if err != nil {
				b.Fatal(err)
			}
			if strings.TrimSpace(pending) == "0" {
				break
			}
			time.Sleep(5 * time.Millisecond) // polling the server's progress; nothing to wait on instead
		}
	}
}
