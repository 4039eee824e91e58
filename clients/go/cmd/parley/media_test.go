package main

import (
	"bytes"
	"context"
	"image"
	"image/color"
	_ "image/jpeg" // thumbnails may be JPEG
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	parleyv1 "github.com/parley-im/parley/clients/go/gen/parley/v1"
	"github.com/parley-im/parley/clients/go/parley"
)

const testPassword = "correct horse battery staple"

// TestSendFileAndDownload drives the CLI against a real parleyd: Alice
// sends a photo and a text file to Bob, Bob reads the history and saves
// both, and Carol, a stranger, cannot. It changes the working directory,
// so it does not run in parallel.
func TestSendFileAndDownload(t *testing.T) {
	srv := startParleyd(t)
	sessions := t.TempDir()
	cli := func(user string, args ...string) (int, string, string) {
		t.Helper()
		var stdout, stderr bytes.Buffer
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		args = append([]string{"-server", srv.url, "-session", filepath.Join(sessions, user+".json")}, args...)
		code := run(ctx, args, env{
			stdout:  &stdout,
			stderr:  &stderr,
			getenv:  func(k string) string { return map[string]string{"PARLEY_PASSWORD": testPassword}[k] },
			homeDir: func() (string, error) { return sessions, nil },
		})
		return code, stdout.String(), stderr.String()
	}
	ok := func(user string, args ...string) string {
		t.Helper()
		code, stdout, stderr := cli(user, args...)
		require.Equal(t, 0, code, "parley %s: %s", strings.Join(args, " "), stderr)
		return stdout
	}
	for _, u := range []string{"alice", "bob", "carol"} {
		ok(u, "register", u)
	}
	conv := strings.TrimSpace(ok("alice", "dm", "bob"))

	src := t.TempDir()
	photo := pngOf(t, 640, 400)
	notes := []byte("remember the milk\n")
	require.NoError(t, os.WriteFile(filepath.Join(src, "cat.png"), photo, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "notes.txt"), notes, 0o600))

	mediaRE := regexp.MustCompile(`(?m)^media (\S+) \(`)
	out := ok("alice", "send-file", conv, filepath.Join(src, "cat.png"), "a", "cat")
	require.Regexp(t, `(?m)^media \S+ \(image/png, .*, 640×400\)\nsent #\d+\n$`, out)
	photoID := mediaRE.FindStringSubmatch(out)[1]
	out = ok("alice", "send-file", conv, filepath.Join(src, "notes.txt"))
	require.Regexp(t, `(?m)^media \S+ \(text/plain.*\)\nsent #\d+\n$`, out)
	notesID := mediaRE.FindStringSubmatch(out)[1]

	// The caption is searchable; the file without one is not.
	require.Regexp(t, `(?m)^\S+ #\d+ .* alice: a \[cat\]$`, ok("bob", "search", "CAT"))
	require.Empty(t, ok("carol", "search", "cat"))
	history := ok("bob", "history", conv)
	require.Contains(t, history, "[image 640×400 cat.png, media "+photoID+"] a cat")
	require.Contains(t, history, "[file notes.txt 18 B, media "+notesID+"]")

	t.Chdir(t.TempDir())
	require.Equal(t, "saved cat.png (", ok("bob", "download", photoID)[:len("saved cat.png (")])
	requireFile(t, "cat.png", photo)

	code, _, stderr := cli("bob", "download", photoID)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "cat.png exists")
	require.NoError(t, os.WriteFile("cat.png", []byte("changed"), 0o600))
	ok("bob", "download", "-f", photoID)
	requireFile(t, "cat.png", photo)

	out = ok("bob", "download", "-thumb", photoID)
	name := strings.Fields(out)[1]
	require.True(t, strings.HasPrefix(name, "cat.thumb."), out)
	f, err := os.Open(name)
	require.NoError(t, err)
	cfg, _, err := image.DecodeConfig(f)
	require.NoError(t, f.Close())
	require.NoError(t, err)
	require.Equal(t, []int{320, 200}, []int{cfg.Width, cfg.Height})

	ok("bob", "download", "-o", "milk.txt", notesID)
	requireFile(t, "milk.txt", notes)

	code, _, stderr = cli("carol", "download", photoID)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not_found")

	entries, err := os.ReadDir(".")
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"cat.png", name, "milk.txt"}, names, "no temporary files are left")
}

// TestDownloadStripsDirectories checks that a file name chosen by the
// uploader cannot place a download outside the current directory.
func TestDownloadStripsDirectories(t *testing.T) {
	srv := startParleyd(t)
	ctx := t.Context()
	alice, err := parley.Register(ctx, srv.url, "alice", testPassword)
	require.NoError(t, err)
	bob, err := parley.Register(ctx, srv.url, "bob", testPassword)
	require.NoError(t, err)
	res, err := alice.Conversations().CreateDirect(ctx, &parleyv1.CreateDirectRequest{
		Peer: &parleyv1.CreateDirectRequest_UserId{UserId: bob.UserID()},
	})
	require.NoError(t, err)
	data := []byte("payload\n")
	info, err := alice.Upload(ctx, bytes.NewReader(data), int64(len(data)), "../../escape.txt")
	require.NoError(t, err)
	_, err = alice.Chat().SendMessage(ctx, &parleyv1.SendMessageRequest{
		ConversationId: res.GetConversation().GetId(), ClientMsgId: "escape-1", Content: parley.File(info.GetMediaId(), ""),
	})
	require.NoError(t, err)

	sessions := t.TempDir()
	store := &store{path: filepath.Join(sessions, "session.json")}
	require.NoError(t, store.put(srv.url, bob.Credentials()))
	root := t.TempDir()
	work := filepath.Join(root, "a", "b")
	require.NoError(t, os.MkdirAll(work, 0o700))
	t.Chdir(work)
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"-server", srv.url, "-session", store.path, "download", info.GetMediaId()}, env{
		stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" },
		homeDir: func() (string, error) { return sessions, nil },
	})
	require.Equal(t, 0, code, stderr.String())
	requireFile(t, "escape.txt", data)
	_, err = os.Stat(filepath.Join(root, "escape.txt"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestLocalName(t *testing.T) {
	t.Parallel()
	thumb := &parleyv1.Thumbnail{ContentType: "image/jpeg"}
	tests := []struct {
		name  string
		file  string
		thumb bool
		want  string
	}{
		{name: "plain", file: "cat.jpg", want: "cat.jpg"},
		{name: "unix_dirs", file: "../../etc/passwd", want: "passwd"},
		{name: "windows_dirs", file: `..\..\boot.ini`, want: "boot.ini"},
		{name: "absolute", file: "/tmp/x.bin", want: "x.bin"},
		{name: "dot_dot", file: "a/..", want: "m1"},
		{name: "trailing_slash", file: "dir/", want: "m1"},
		{name: "empty", file: "", want: "m1"},
		{name: "thumbnail", file: "cat.png", thumb: true, want: "cat.thumb.jpg"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			info := &parleyv1.MediaInfo{MediaId: "m1", FileName: tt.file, Thumbnail: thumb}
			require.Equal(t, tt.want, localName(info, tt.thumb))
		})
	}
}

func TestMediaLine(t *testing.T) {
	t.Parallel()
	require.Equal(t, "[image 1200×800 cat.jpg, media m1] look ⏎ here",
		mediaLine("image", &parleyv1.MediaRef{MediaId: "m1", FileName: "cat.jpg", Width: 1200, Height: 800, Caption: "look\nhere"}))
	require.Equal(t, "[file notes.pdf 1.5 MiB, media m2]",
		mediaLine("file", &parleyv1.MediaRef{MediaId: "m2", FileName: "notes.pdf", SizeBytes: 3 << 19}))
}

func TestHumanBytes(t *testing.T) {
	t.Parallel()
	for n, want := range map[uint64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 20: "5.0 MiB", 3 << 30: "3.0 GiB", 5 << 40: "5120.0 GiB"} {
		require.Equal(t, want, humanBytes(n), "%d", n)
	}
}

func TestMediaUsage(t *testing.T) {
	t.Parallel()
	for name, args := range map[string][]string{
		"send_file_without_path": {"send-file", "conv"},
		"download_without_id":    {"download"},
		"download_two_ids":       {"download", "a", "b"},
		"download_unknown_flag":  {"download", "-x", "a"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			dir := t.TempDir()
			code := run(t.Context(), args, env{
				stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" },
				homeDir: func() (string, error) { return dir, nil },
			})
			require.Equal(t, 2, code, stderr.String())
		})
	}
}

func requireFile(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, want, got)
}

func pngOf(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x ^ y), 255})
		}
	}
	var b bytes.Buffer
	require.NoError(t, png.Encode(&b, img))
	return b.Bytes()
}
