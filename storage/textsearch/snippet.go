package textsearch

import (
	"strings"
	"unicode/utf8"
)

// Ellipsis marks text cut from either end of a snippet.
const Ellipsis = "…"

// Range is a highlighted part of a snippet, in Unicode code points (not
// bytes, not UTF-16 units): the snippet's code points Start up to End.
type Range struct {
	Start, End int
}

// Snippet returns the part of text around its first word matching terms,
// at most maxRunes code points of it (plus an Ellipsis at each end that
// was cut), with every matching word inside it as a Range. A text shorter
// than maxRunes comes whole. With no matching word the snippet is text's
// start, without highlights. Whitespace runs (newlines included) are kept
// as they are.
func Snippet(text string, terms []string, maxRunes int) (string, []Range) {
	if maxRunes < 1 {
		maxRunes = 1
	}
	words := Words(text)
	first := -1
	for i, w := range words {
		if Matches(w.Folded, terms) {
			first = i
			break
		}
	}
	// The window: bytes [from, to) of text.
	from, to := 0, len(text)
	if utf8.RuneCountInString(text) > maxRunes {
		if first >= 0 {
			// Start a little before the first match, at a word's start,
			// so it has some context.
			lead := maxRunes / 4
			from = words[first].Start
			for j := first - 1; j >= 0 && utf8.RuneCountInString(text[words[j].Start:words[first].Start]) <= lead; j-- {
				from = words[j].Start
			}
		}
		to = from
		for n := 0; n < maxRunes && to < len(text); n++ {
			_, size := utf8.DecodeRuneInString(text[to:])
			to += size
		}
		// End at a word's end when one ends inside the window.
		if to < len(text) {
			for j := len(words) - 1; j >= 0; j-- {
				if words[j].End <= to && words[j].End > from {
					to = words[j].End
					break
				}
			}
		}
	}
	var b strings.Builder
	offset := 0 // code points written
	if from > 0 {
		b.WriteString(Ellipsis)
		offset = utf8.RuneCountInString(Ellipsis)
	}
	b.WriteString(text[from:to])
	if to < len(text) {
		b.WriteString(Ellipsis)
	}
	var hl []Range
	pos, at := offset, from // code point of byte at in the snippet
	for _, w := range words {
		if w.Start < from || w.End > to || !Matches(w.Folded, terms) {
			continue
		}
		pos += utf8.RuneCountInString(text[at:w.Start])
		n := utf8.RuneCountInString(text[w.Start:w.End])
		hl = append(hl, Range{Start: pos, End: pos + n})
		pos += n
		at = w.End
	}
	return b.String(), hl
}
