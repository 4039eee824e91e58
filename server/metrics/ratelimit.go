package metrics

import "github.com/prometheus/client_golang/prometheus"

// Limiter names a rate limiter.
type Limiter int

// The rate limiters.
const (
	// LimitSend is the per-device send rate (chat.send_rate).
	LimitSend Limiter = iota
	// LimitLogin is the failed-login limit per username
	// (auth.login_failure_*).
	LimitLogin
	// LimitAddress is the Register/Login limit per client address
	// (auth.address_attempt_*).
	LimitAddress
	numLimiters
)

var limiterNames = [numLimiters]string{"send", "login", "address"}

// RateLimit counts what the rate limiters refuse.
type RateLimit struct {
	rejections [numLimiters]prometheus.Counter
}

func newRateLimit(r *registrar) *RateLimit {
	v := r.counterVec("ratelimit", "rejections_total", "Calls and frames refused with resource_exhausted by a rate limiter.", "limiter")
	rl := &RateLimit{}
	for i, name := range limiterNames {
		rl.rejections[i] = v.WithLabelValues(name)
	}
	return rl
}

// Rejected records a refusal by l.
func (r *RateLimit) Rejected(l Limiter) {
	if r == nil {
		return
	}
	r.rejections[l].Inc()
}
