package admin_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/admin"
)

func TestHandler(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_test_total", Help: "A test counter."})
	reg.MustRegister(c)
	c.Inc()
	var notReady error
	h := admin.Handler(admin.Config{Gatherer: reg, Ready: func(ctx context.Context) error {
		_, hasDeadline := ctx.Deadline()
		require.True(t, hasDeadline, "readiness checks are bounded")
		return notReady
	}})
	get := func(t *testing.T, path string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, path, http.NoBody))
		body, err := io.ReadAll(rec.Result().Body)
		require.NoError(t, err)
		return rec.Code, string(body)
	}
	tests := []struct {
		name, path string
		code       int
		body       string
	}{
		{name: "metrics", path: "/metrics", code: http.StatusOK, body: "parley_test_total 1"},
		{name: "liveness", path: "/healthz", code: http.StatusOK, body: "ok"},
		{name: "readiness", path: "/readyz", code: http.StatusOK, body: "ready"},
		{name: "pprof_index", path: "/debug/pprof/", code: http.StatusOK, body: "goroutine"},
		{name: "pprof_profile_by_name", path: "/debug/pprof/goroutine?debug=1", code: http.StatusOK, body: "goroutine profile"},
		{name: "pprof_symbol", path: "/debug/pprof/symbol", code: http.StatusOK, body: "num_symbols"},
		{name: "unknown", path: "/nope", code: http.StatusNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := get(t, tt.path)
			require.Equal(t, tt.code, code)
			require.Contains(t, body, tt.body)
		})
	}

	notReady = errors.New("store unreachable")
	code, body := get(t, "/readyz")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "store unreachable")
	code, _ = get(t, "/healthz")
	require.Equal(t, http.StatusOK, code, "liveness does not depend on readiness")
}
