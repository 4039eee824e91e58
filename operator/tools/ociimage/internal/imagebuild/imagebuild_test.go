package imagebuild

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestEnvironment(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		vars    []string
		want    []string
		wantErr string
	}{
		{name: "default_path_first", vars: []string{"A=1", "B="}, want: []string{defaultPath, "A=1", "B="}},
		{name: "own_path_kept", vars: []string{"PATH=/bin", "A=x=y"}, want: []string{"PATH=/bin", "A=x=y"}},
		{name: "none", want: []string{defaultPath}},
		{name: "no_equals", vars: []string{"A"}, wantErr: `env "A": want KEY=VALUE`},
		{name: "no_key", vars: []string{"=1"}, wantErr: `env "=1": want KEY=VALUE`},
		{name: "twice", vars: []string{"A=1", "A=2"}, wantErr: "env A: given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := environment(tt.vars)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestExposedPorts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		specs   []string
		want    map[string]struct{}
		wantErr string
	}{
		{name: "tcp_by_default", specs: []string{"8080", "9090/tcp", "53/udp", "0132/sctp"}, want: map[string]struct{}{"8080/tcp": {}, "9090/tcp": {}, "53/udp": {}, "132/sctp": {}}},
		{name: "none"},
		{name: "zero", specs: []string{"0/tcp"}, wantErr: `port "0/tcp": want a number from 1 to 65535`},
		{name: "too_big", specs: []string{"65536"}, wantErr: `port "65536": want a number`},
		{name: "name", specs: []string{"http"}, wantErr: `port "http": want a number`},
		{name: "protocol", specs: []string{"80/http"}, wantErr: `port "80/http": protocol must be tcp, udp or sctp`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := exposedPorts(tt.specs)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
