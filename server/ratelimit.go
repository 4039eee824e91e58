package server

import (
	"fmt"
	"time"

	"github.com/parley-im/parley/server/internal/ratelimit"
	"github.com/parley-im/parley/server/metrics"
)

// newSendLimiter is the per-device send limit of cfg; nil when disabled.
func newSendLimiter(cfg Config) *ratelimit.Keyed {
	if cfg.SendRate <= 0 {
		return nil
	}
	return ratelimit.New(cfg.SendBurst, time.Second/time.Duration(cfg.SendRate))
}

// allowSend spends one send of deviceID, or returns the ResourceExhausted
// error (with a RetryInfo detail) that refuses it.
func (s *Server) allowSend(deviceID string) error {
	if ok, wait := s.sends.Allow(deviceID, s.now()); !ok {
		s.limits.Rejected(metrics.LimitSend)
		return ratelimit.Error(fmt.Sprintf("send rate limit exceeded: %d messages per second per device (bursts of %d), retry later",
			s.cfg.SendRate, s.cfg.SendBurst), wait)
	}
	return nil
}
