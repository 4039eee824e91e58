package schema

import (
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestLoad(t *testing.T) {
	t.Parallel()
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	t.Run("sorted_by_version", func(t *testing.T) {
		t.Parallel()
		ms, err := Load(fstest.MapFS{
			"m/0010_later.sql": file("B"),
			"m/0002_first.sql": file("A"),
		}, "m/*.sql")
		require.NoError(t, err)
		require.Equal(t, []Migration{{2, "first", "A"}, {10, "later", "B"}}, ms)
	})
	for _, tc := range []struct {
		name    string
		fsys    fstest.MapFS
		wantErr string
	}{
		{"empty", fstest.MapFS{}, "no migrations"},
		{"bad_name", fstest.MapFS{"m/init.sql": file("x")}, "NNNN_name.sql"},
		{"zero_version", fstest.MapFS{"m/0000_x.sql": file("x")}, "NNNN_name.sql"},
		{"duplicate_version", fstest.MapFS{"m/0001_a.sql": file("x"), "m/1_b.sql": file("y")}, "already used"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(tc.fsys, "m/*.sql")
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestNewEpoch(t *testing.T) {
	t.Parallel()
	a, err := NewEpoch()
	require.NoError(t, err)
	b, err := NewEpoch()
	require.NoError(t, err)
	require.Len(t, a, 32)
	require.NotEqual(t, a, b)
}
