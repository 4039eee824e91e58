package textsearch_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/textsearch"
)

func TestTerms(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, query string
		want        []string
	}{
		{"words", "Hello World", []string{"hello", "world"}},
		{"diacritics", "Crème BRÛLÉE", []string{"creme", "brulee"}},
		{"fts_syntax", `"foo" AND bar* NEAR(x) -baz ^q col:v`, []string{"foo", "and", "bar", "near", "x", "baz", "q", "col", "v"}},
		{"sql", `'; DROP TABLE messages; --`, []string{"drop", "table", "messages"}},
		{"punctuation_only", `*"()!?`, nil},
		{"repeat_moves_last", "a b a", []string{"b", "a"}},
		{"cyrillic_cjk", "Привет 你好", []string{"привет", "你好"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, textsearch.Terms(tc.query))
		})
	}
}

func TestSnippet(t *testing.T) {
	t.Parallel()
	snip, hl := textsearch.Snippet("Meet at the Café, café au lait!", []string{"cafe"}, 100)
	require.Equal(t, "Meet at the Café, café au lait!", snip)
	require.Equal(t, []textsearch.Range{{12, 16}, {18, 22}}, hl)
	r := []rune(snip)
	require.Equal(t, "Café", string(r[12:16]))

	long := "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
	snip, hl = textsearch.Snippet(long, []string{"nin"}, 24)
	require.Equal(t, "…eight nine ten eleven…", snip)
	require.Equal(t, []textsearch.Range{{7, 11}}, hl)
	require.Equal(t, "nine", string([]rune(snip)[7:11]))

	snip, hl = textsearch.Snippet(long, []string{"zzz"}, 8)
	require.Equal(t, "one two…", snip)
	require.Empty(t, hl)
}
