package clickhouse

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/storage/textsearch"
)

func TestFeaturesOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		version string
		want    Features
		wantErr bool
	}{
		{name: "debian_18_16", version: "18.16.1", want: Features{Version: "18.16.1"}},
		{name: "ttl_without_indexes", version: "19.6.2.11", want: Features{Version: "19.6.2.11", TTL: true}},
		{name: "indexes_production_ready", version: "20.1.2.4", want: Features{Version: "20.1.2.4", TokenIndex: true, TTL: true}},
		{name: "current", version: "24.8.4.13", want: Features{Version: "24.8.4.13", TokenIndex: true, TTL: true}},
		{name: "not_a_version", version: "latest", wantErr: true},
		{name: "major_only", version: "24", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := featuresOf(tc.version)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestStatements(t *testing.T) {
	t.Parallel()
	got := statements("-- a comment; with a semicolon\nCREATE TABLE a (x UInt8)\nENGINE = Memory;\n\n  -- another\nDROP TABLE b;\n")
	require.Equal(t, []string{"CREATE TABLE a (x UInt8)\nENGINE = Memory", "DROP TABLE b"}, got)
	for _, idx := range featureIndexes {
		require.Len(t, statements(idx.ddl), 1, "the feature DDL is one statement")
		require.Contains(t, idx.ddl, "INDEX "+idx.name+" ", "applyFeatures looks for this text in SHOW CREATE TABLE")
	}
}

func TestAddedColumn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		stmt          string
		table, column string
	}{
		{stmt: "ALTER TABLE messages ADD COLUMN search_text String", table: "messages", column: "search_text"},
		{stmt: "alter  table messages\n\tadd column x UInt8 DEFAULT 0", table: "messages", column: "x"},
		{stmt: "ALTER TABLE messages ADD INDEX i x TYPE minmax GRANULARITY 1"},
		{stmt: "CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = Memory"},
	} {
		table, column := addedColumn(tc.stmt)
		require.Equal(t, tc.table, table, tc.stmt)
		require.Equal(t, tc.column, column, tc.stmt)
	}
}

func TestSearchWords(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ text, want string }{
		{text: "", want: ""},
		{text: " ,.!", want: ""},
		{text: "Hello, hello WORLD!", want: " hello world "},
		{text: "a1 b_2 c-3", want: " a1 b 2 c 3 "},
		{text: "Crème brûlée, CRÈME", want: " creme brulee "},
		{text: "ÇA va\tça", want: " ca va "},
	} {
		require.Equal(t, tc.want, searchWords(tc.text), tc.text)
	}
	// It splits and folds as textsearch.Words does: every ASCII byte
	// inside and between words, and non-ASCII letters, digits, marks,
	// spaces and symbols.
	var all strings.Builder
	for c := range 128 {
		fmt.Fprintf(&all, "x%cY ", c)
	}
	all.WriteString("É\u0301t\u00e9 ÉTÉ \u0301 \u0301\u0301 Ⅻ ² ٣ 中文 ß İ ǅ naïve\u00a0café—Straße ①x a\u200bb")
	for _, text := range []string{all.String(), "Crème brûlée, CRÈME", "ÇA va\tça", "\u0301"} {
		var want strings.Builder
		seen := map[string]bool{}
		for _, w := range textsearch.Words(text) {
			if !seen[w.Folded] {
				seen[w.Folded] = true
				want.WriteString(" " + w.Folded)
			}
		}
		if want.Len() > 0 {
			want.WriteString(" ")
		}
		require.Equal(t, want.String(), searchWords(text), text)
	}
}
