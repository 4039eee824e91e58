// Package textsearch is how Parley turns text into words for message
// search, shared by the server (queries, snippets) and the storage
// backends (indexing): a word is a run of letters, digits and combining
// marks; words are compared folded, that is lowercased and without
// diacritics, so "Crème" and "creme" are the same word.
//
// SQLite's FTS5 tokenizer unicode61 with remove_diacritics 2 splits and
// folds the same way for the scripts chat users type; PostgreSQL and
// ClickHouse index the words Words returns.
package textsearch

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

const (
	// MaxTerms bounds the words of one query; the rest are ignored.
	MaxTerms = 16
	// MaxWordBytes is what Clip cuts a word to.
	MaxWordBytes = 128
)

// Word is one word of a text: its folded form and where it is.
type Word struct {
	// Folded is the word lowercased, without diacritics.
	Folded string
	// Start and End are the word's byte offsets in the text.
	Start, End int
}

// Words splits text into its words, in order.
func Words(text string) []Word {
	var (
		words []Word
		start = -1
	)
	for i, r := range text {
		if isWordRune(r) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			words = appendWord(words, text, start, i)
			start = -1
		}
	}
	if start >= 0 {
		words = appendWord(words, text, start, len(text))
	}
	return words
}

// Terms returns the words of a user's query, folded, without repeats (the
// last one kept last, since it is matched as a prefix), at most MaxTerms.
// Punctuation and operators of any query syntax are separators, so no
// query text can change how a backend parses the terms. Empty when query
// has no letter or digit.
func Terms(query string) []string {
	words := Words(query)
	var terms []string
	seen := make(map[string]bool)
	for i, w := range words {
		t := w.Folded
		last := i == len(words)-1
		if seen[t] && !last {
			continue
		}
		if seen[t] {
			// Move the repeat to the end: it is the prefix term.
			for j, u := range terms {
				if u == t {
					terms = append(terms[:j], terms[j+1:]...)
					break
				}
			}
		}
		seen[t] = true
		terms = append(terms, t)
	}
	if len(terms) > MaxTerms {
		// Keep the last (prefix) term.
		terms = append(terms[:MaxTerms-1], terms[len(terms)-1])
	}
	return terms
}

// Fold lowercases s and removes its diacritics.
func Fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range norm.NFD.String(s) {
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(unicode.ToLower(r))
	}
	return b.String()
}

// Matches reports whether the folded word w matches terms: it equals one
// of them, or starts with the last one.
func Matches(w string, terms []string) bool {
	for i, t := range terms {
		if w == t || (i == len(terms)-1 && strings.HasPrefix(w, t)) {
			return true
		}
	}
	return false
}

func appendWord(words []Word, text string, start, end int) []Word {
	f := Fold(text[start:end])
	if f == "" {
		// Only combining marks.
		return words
	}
	return append(words, Word{Folded: f, Start: start, End: end})
}

func isWordRune(r rune) bool {
	// IsNumber covers IsDigit (Nd) and the other number categories.
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Mn, r)
}

// Clip shortens a word to at most MaxWordBytes, on a rune boundary, for
// indexes that bound a word's length (a tsvector lexeme takes at most
// 2 KiB): a backend that clips the words it indexes clips the terms it
// looks up too, so a longer word is still found by its whole self.
func Clip(w string) string {
	n := MaxWordBytes
	if len(w) <= n {
		return w
	}
	for n > 0 && !utf8.RuneStart(w[n]) {
		n--
	}
	return w[:n]
}
