package tlsfiles_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/tlsfiles"
)

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		cfg         tlsfiles.Config
		wantEnabled bool
		wantErr     string
	}{
		{name: "neither", cfg: tlsfiles.Config{}},
		{name: "both", cfg: tlsfiles.Config{CertFile: "tls.crt", KeyFile: "tls.key"}, wantEnabled: true},
		{name: "cert_only", cfg: tlsfiles.Config{CertFile: "tls.crt"}, wantErr: "key_file is not set"},
		{name: "key_only", cfg: tlsfiles.Config{KeyFile: "tls.key"}, wantErr: "cert_file is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tt.wantEnabled, tt.cfg.Enabled())
			err := tt.cfg.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}
