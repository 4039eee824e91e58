package web_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/parley-im/parley/server/web"
)

const indexPage = "<!doctype html><div id=app></div>"

// builtApp writes what `vite build` leaves in dist: index.html, hashed
// assets and a file at the root.
func builtApp(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "assets"), 0o755))
	for name, body := range map[string]string{
		"index.html":           indexPage,
		"assets/index-3f2a.js": "console.log('app')",
		"favicon.svg":          "<svg/>",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return dir
}

// reply is what the handler answered one request.
type reply struct {
	status int
	header http.Header
	body   string
}

func get(t *testing.T, h http.Handler, method, path string) reply {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return reply{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
}

func TestServesTheBuiltApp(t *testing.T) {
	h, err := web.New(builtApp(t))
	require.NoError(t, err)

	t.Run("index_is_revalidated", func(t *testing.T) {
		res := get(t, h, http.MethodGet, "/")
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, indexPage, res.body)
		require.Equal(t, "no-cache", res.header.Get("Cache-Control"))
		require.Contains(t, res.header.Get("Content-Security-Policy"), "default-src 'self'")
		require.Equal(t, "nosniff", res.header.Get("X-Content-Type-Options"))
	})
	t.Run("app_paths_get_the_index", func(t *testing.T) {
		for _, p := range []string{"/chat/c123", "/login", "/index.html"} {
			res := get(t, h, http.MethodGet, p)
			require.Equal(t, http.StatusOK, res.status, p)
			require.Equal(t, indexPage, res.body, p)
		}
	})
	t.Run("hashed_assets_are_cached_for_good", func(t *testing.T) {
		res := get(t, h, http.MethodGet, "/assets/index-3f2a.js")
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, "console.log('app')", res.body)
		require.Contains(t, res.header.Get("Cache-Control"), "immutable")
		require.Contains(t, res.header.Get("Content-Type"), "javascript")
	})
	t.Run("other_files_are_revalidated", func(t *testing.T) {
		res := get(t, h, http.MethodGet, "/favicon.svg")
		require.Equal(t, http.StatusOK, res.status)
		require.Equal(t, "no-cache", res.header.Get("Cache-Control"))
	})
	t.Run("missing_asset_is_404_not_the_page", func(t *testing.T) {
		res := get(t, h, http.MethodGet, "/assets/index-old.js")
		require.Equal(t, http.StatusNotFound, res.status)
		require.NotContains(t, res.body, indexPage)
	})
	t.Run("no_escape_from_the_directory", func(t *testing.T) {
		res := get(t, h, http.MethodGet, "/../../etc/passwd")
		require.NotContains(t, res.body, "root:")
	})
	t.Run("only_get_and_head", func(t *testing.T) {
		res := get(t, h, http.MethodPost, "/parley.v9.Unknown/Call")
		require.Equal(t, http.StatusNotFound, res.status)
		require.Equal(t, "GET, HEAD", res.header.Get("Allow"))
		res = get(t, h, http.MethodHead, "/")
		require.Equal(t, http.StatusOK, res.status)
		require.Empty(t, res.body)
	})
}

func TestExplainsAnAppThatWasNotBuilt(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dist")
	h, err := web.New(dir)
	require.ErrorIs(t, err, web.ErrNotBuilt)
	require.NotNil(t, h)

	res := get(t, h, http.MethodGet, "/")
	require.Equal(t, http.StatusOK, res.status)
	page := res.body
	require.Contains(t, page, "make web")
	require.Contains(t, page, dir)
	require.Equal(t, http.StatusNotFound, get(t, h, http.MethodGet, "/assets/x.js").status)
}
