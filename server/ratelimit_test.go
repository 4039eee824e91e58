package server

import (
	"testing"
	"time"

	"connectrpc.com/connect/v2"
	"github.com/stretchr/testify/require"
)

func TestSendLimitConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		rate       int
		burst      int
		wantErr    string
		wantActive bool
	}{
		{name: "defaults", rate: 200, burst: 1000, wantActive: true},
		{name: "disabled", rate: 0, burst: 0},
		{name: "negative_rate", rate: -1, burst: 10, wantErr: "send_rate must not be negative"},
		{name: "rate_without_burst", rate: 10, burst: 0, wantErr: "send_burst must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := DefaultConfig()
			cfg.SendRate, cfg.SendBurst = tt.rate, tt.burst
			err := cfg.Validate()
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantActive, newSendLimiter(cfg) != nil)
		})
	}
}

func TestAllowSend(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	s := &Server{
		cfg:   Config{SendRate: 2, SendBurst: 3},
		sends: newSendLimiter(Config{SendRate: 2, SendBurst: 3}),
		now:   func() time.Time { return now },
	}
	steps := []struct {
		device  string
		advance time.Duration
		allowed bool
	}{
		{"d1", 0, true}, {"d1", 0, true}, {"d1", 0, true},
		{"d1", 0, false},
		{"d2", 0, true},
		{"d1", 400 * time.Millisecond, false},
		{"d1", 100 * time.Millisecond, true},
		{"d1", 0, false},
	}
	for i, st := range steps {
		now = now.Add(st.advance)
		err := s.allowSend(st.device)
		if st.allowed {
			require.NoError(t, err, "step %d", i)
			continue
		}
		var ce *connect.Error
		require.ErrorAs(t, err, &ce, "step %d", i)
		require.Equal(t, connect.CodeResourceExhausted, ce.Code())
		require.Equal(t, "send rate limit exceeded: 2 messages per second per device (bursts of 3), retry later", ce.Message())
		require.Len(t, ce.Details(), 1)
	}
}
