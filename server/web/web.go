// Package web serves the built web app (clients/web/dist) next to the API,
// so one address gives a browser both the chat app and the procedures it
// calls, with no CORS to configure.
//
// The app is a single page: a path that names no file gets index.html, and
// the app's own router takes it from there. Vite names every built asset
// after its content hash, so assets are cached for good while index.html is
// revalidated on every load; a rebuilt app is picked up without a restart.
package web

import (
	"errors"
	"fmt"
	"html"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strings"
)

// securityHeaders go on every response: the app loads nothing from other
// origins, is never framed, and talks only to its own origin.
var securityHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
		"img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
	"X-Content-Type-Options": "nosniff",
	"Referrer-Policy":        "no-referrer",
	"X-Frame-Options":        "DENY",
}

// New returns the handler serving the app built into dir. When dir holds no
// index.html (the app was never built) it returns a handler that explains
// how to build it, and notBuilt reports why, so the caller can log it once.
func New(dir string) (h http.Handler, notBuilt error) {
	root := os.DirFS(dir)
	if _, err := fs.Stat(root, "index.html"); err != nil {
		return placeholder{dir: dir}, fmt.Errorf("%w in %s: %w", ErrNotBuilt, dir, err)
	}
	return &app{root: root, files: http.FileServerFS(root)}, nil
}

type app struct {
	root  fs.FS
	files http.Handler
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	setSecurityHeaders(w)
	name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	switch {
	case name == "" || name == "index.html":
		a.serveIndex(w, r)
	case isFile(a.root, name):
		if strings.HasPrefix(name, "assets/") {
			w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		} else {
			w.Header().Set("Cache-Control", "no-cache")
		}
		a.files.ServeHTTP(w, r)
	case path.Ext(name) != "":
		// A missing asset (an old tab asking for a replaced build's file)
		// is a plain 404, not the page: a script tag must not get HTML.
		http.NotFound(w, r)
	default:
		a.serveIndex(w, r)
	}
}

// serveIndex answers with index.html itself, never a redirect: the file
// server redirects "/index.html" to "/", and the app's path must survive.
func (a *app) serveIndex(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-cache")
	page, err := fs.ReadFile(a.root, "index.html")
	if err != nil {
		http.Error(w, "web app: index.html unreadable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(page)
}

func isFile(root fs.FS, name string) bool {
	info, err := fs.Stat(root, name)
	return err == nil && info.Mode().IsRegular()
}

// placeholder stands in for an app that was never built: a person opening
// the server's address learns what to do instead of seeing a bare 404.
type placeholder struct{ dir string }

const placeholderPage = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Parley</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 3rem auto; line-height: 1.5">
<h1>Parley is running</h1>
<p>The API is served here (Connect, gRPC and gRPC-Web), but the web app has not been built
into <code>%s</code>.</p>
<p>Build it with <code>make web</code> (needs Node 20 or newer and npm; <code>make run</code>
does it for you when Node is installed), then reload this page.</p>
</body></html>
`

func (p placeholder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !allowMethod(w, r) {
		return
	}
	setSecurityHeaders(w)
	if r.URL.Path != "/" {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	if r.Method == http.MethodHead {
		return
	}
	_, _ = fmt.Fprintf(w, placeholderPage, html.EscapeString(p.dir))
}

// allowMethod answers anything but GET and HEAD: the app is read-only, and
// a POST reaching here is an RPC for a service this server does not have.
func allowMethod(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	http.Error(w, "not found: no such procedure or page", http.StatusNotFound)
	return false
}

func setSecurityHeaders(w http.ResponseWriter) {
	for k, v := range securityHeaders {
		w.Header().Set(k, v)
	}
}

// ErrNotBuilt is returned (wrapped) by New when dir holds no built app.
var ErrNotBuilt = errors.New("web app not built")
