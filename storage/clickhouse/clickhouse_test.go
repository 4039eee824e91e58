package clickhouse

import (
	"testing"

	"github.com/stretchr/testify/require"
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
	require.Len(t, statements(bodyTokensDDL), 1, "the feature DDL is one statement")
	require.Contains(t, bodyTokensDDL, "INDEX body_tokens ", "applyFeatures looks for this text in SHOW CREATE TABLE")
}
