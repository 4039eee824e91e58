package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServesTheWebAppBesideTheAPI: with -web-dir the app is at / and every
// procedure keeps its path; an unknown procedure is still a 404, not the
// page.
func TestServesTheWebAppBesideTheAPI(t *testing.T) {
	dist := t.TempDir()
	const page = "<!doctype html><title>parley web test</title>"
	require.NoError(t, os.WriteFile(filepath.Join(dist, "index.html"), []byte(page), 0o644))
	ts := startServer(t, "-web-dir", dist)
	hc := h2cClient()

	for _, path := range []string{"/", "/c/123"} {
		status, body := get(t, hc, ts.url+path)
		require.Equal(t, http.StatusOK, status, path)
		require.Equal(t, page, body, path)
	}

	// The API is untouched: a real call over the same port succeeds.
	u := register(t, hc, ts.url, "webapp_user")
	require.NotEmpty(t, u.id)

	res, err := hc.Post(ts.url+"/parley.v1.NoSuchService/Call", "application/json", strings.NewReader("{}"))
	require.NoError(t, err)
	require.NoError(t, res.Body.Close())
	require.Equal(t, http.StatusNotFound, res.StatusCode)
}

// TestWithoutABuiltAppTheRootSaysHowToBuildIt covers `make run` before the
// app was ever built (no Node on the machine).
func TestWithoutABuiltAppTheRootSaysHowToBuildIt(t *testing.T) {
	ts := startServer(t, "-web-dir", filepath.Join(t.TempDir(), "missing"))
	status, body := get(t, h2cClient(), ts.url+"/")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "make web")

	ts = startServer(t, "-web-dir", "")
	status, _ = get(t, h2cClient(), ts.url+"/")
	require.Equal(t, http.StatusNotFound, status)
}
