package imagebuild

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// member is a tar member as read back: its header and contents.
type member struct {
	hdr  *tar.Header
	data string
}

func readTar(t *testing.T, r io.Reader) (names []string, members map[string]member) {
	t.Helper()
	members = map[string]member{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, members
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		names = append(names, hdr.Name)
		members[hdr.Name] = member{hdr: hdr, data: string(data)}
	}
}

func writeRootfs(t *testing.T, r *rootfs) (names []string, members map[string]member) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, r.write(&buf))
	return readTar(t, &buf)
}

func TestRootfsWrite(t *testing.T) {
	t.Parallel()
	mtime := time.Unix(1700000000, 123).UTC()
	r := newRootfs(mtime)
	// Added out of order, children before parents.
	require.NoError(t, r.addData("/usr/share/app/b.txt", []byte("b"), 0o644))
	require.NoError(t, r.addData("/usr/share/app-x", []byte("x"), 0o644))
	require.NoError(t, r.addBase())
	require.NoError(t, r.addDir("/var/lib/app", 0o755, NonRootID, NonRootID))
	require.NoError(t, r.addData("/usr/share/app/a.txt", []byte("a"), 0o600))

	names, members := writeRootfs(t, r)
	require.Equal(t, []string{
		"etc/", "etc/group", "etc/nsswitch.conf", "etc/passwd",
		"home/", "home/nonroot/",
		"tmp/",
		// Sorted by clean path: "app" < "app-x" < "app/a.txt".
		"usr/", "usr/share/", "usr/share/app/", "usr/share/app-x", "usr/share/app/a.txt", "usr/share/app/b.txt",
		"var/", "var/lib/", "var/lib/app/",
	}, names)
	for name, m := range members {
		require.Equal(t, time.Unix(1700000000, 0).UTC(), m.hdr.ModTime.UTC(), name)
	}
	require.Equal(t, int64(0o1777), members["tmp/"].hdr.Mode)
	require.Equal(t, int64(0o755), members["usr/share/"].hdr.Mode, "an implied parent")
	require.Equal(t, 0, members["usr/share/"].hdr.Uid)
	require.Equal(t, NonRootID, members["var/lib/app/"].hdr.Uid)
	require.Equal(t, NonRootID, members["var/lib/app/"].hdr.Gid)
	require.Equal(t, int64(0o600), members["usr/share/app/a.txt"].hdr.Mode)
	require.Equal(t, "a", members["usr/share/app/a.txt"].data)
	require.Contains(t, members["etc/passwd"].data, "nonroot:x:65532:65532:")
	require.Contains(t, members["etc/group"].data, "nonroot:x:65532:")
}

func TestRootfsAdd(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		add     func(r *rootfs) error
		wantErr string
	}{
		{
			name:    "file_twice",
			add:     func(r *rootfs) error { return r.addData("/etc/passwd", nil, 0o644) },
			wantErr: "/etc/passwd: added twice",
		},
		{
			name:    "file_over_directory",
			add:     func(r *rootfs) error { return r.addData("/tmp", nil, 0o644) },
			wantErr: "/tmp: added twice",
		},
		{
			name:    "directory_under_a_file",
			add:     func(r *rootfs) error { return r.addDir("/etc/passwd/x", 0o755, 0, 0) },
			wantErr: "/etc/passwd: needed as a directory but already added as a file",
		},
		{
			name:    "directory_with_another_mode",
			add:     func(r *rootfs) error { return r.addDir("/tmp", 0o755, 0, 0) },
			wantErr: "/tmp: directory given twice",
		},
		{
			name: "same_directory_twice",
			add:  func(r *rootfs) error { return r.addDir("/tmp/", 0o1777, 0, 0) },
		},
		{
			name: "explicit_directory_over_implied",
			add:  func(r *rootfs) error { return r.addDir("/etc", 0o755, 1, 1) },
		},
		{
			name:    "relative_path",
			add:     func(r *rootfs) error { return r.addData("etc/x", nil, 0o644) },
			wantErr: `"etc/x": image paths must be absolute`,
		},
		{
			name:    "root_as_a_file",
			add:     func(r *rootfs) error { return r.addData("/", nil, 0o644) },
			wantErr: "/ is a directory",
		},
		{
			name: "dot_dot_stays_inside",
			add:  func(r *rootfs) error { return r.addData("/../../x", nil, 0o644) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := newRootfs(time.Unix(0, 0))
			require.NoError(t, r.addBase())
			err := tt.add(r)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			_, members := writeRootfs(t, r)
			require.NotContains(t, members, "../x")
		})
	}
}

func TestRootfsAddTree(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "assets"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(src, "index.html"), []byte("<html>"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "assets", "run.sh"), []byte("#!/bin/sh"), 0o700))
	require.NoError(t, os.Symlink("index.html", filepath.Join(src, "home.html")))
	// A link to the tree is followed at the root only.
	link := filepath.Join(t.TempDir(), "dist")
	require.NoError(t, os.Symlink(src, link))

	r := newRootfs(time.Unix(0, 0))
	require.NoError(t, r.addTree(link, "/srv/web"))
	names, members := writeRootfs(t, r)
	require.Equal(t, []string{"srv/", "srv/web/", "srv/web/assets/", "srv/web/assets/run.sh", "srv/web/home.html", "srv/web/index.html"}, names)
	require.Equal(t, int64(0o755), members["srv/web/assets/"].hdr.Mode, "directories are 0755 whatever the checkout's umask")
	require.Equal(t, int64(0o755), members["srv/web/assets/run.sh"].hdr.Mode, "executables are 0755")
	require.Equal(t, int64(0o644), members["srv/web/index.html"].hdr.Mode, "other files are 0644")
	require.Equal(t, "<html>", members["srv/web/index.html"].data)
	require.Equal(t, byte(tar.TypeSymlink), members["srv/web/home.html"].hdr.Typeflag)
	require.Equal(t, "index.html", members["srv/web/home.html"].hdr.Linkname)

	t.Run("a_single_file", func(t *testing.T) {
		t.Parallel()
		r := newRootfs(time.Unix(0, 0))
		require.NoError(t, r.addTree(filepath.Join(src, "index.html"), "/srv/index.html"))
		names, _ := writeRootfs(t, r)
		require.Equal(t, []string{"srv/", "srv/index.html"}, names)
	})
	t.Run("special_files_are_refused", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "fifo"), 0o600))
		err := newRootfs(time.Unix(0, 0)).addTree(dir, "/x")
		require.ErrorContains(t, err, "fifo: not a regular file, directory or symbolic link")
	})
	t.Run("missing_source", func(t *testing.T) {
		t.Parallel()
		err := newRootfs(time.Unix(0, 0)).addTree(filepath.Join(src, "nope"), "/x")
		require.ErrorIs(t, err, os.ErrNotExist)
	})
}

func TestRootfsFileChangedWhileWriting(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, []byte("12345"), 0o644))
	r := newRootfs(time.Unix(0, 0))
	require.NoError(t, r.addFile("/f", file, 0o644))
	require.NoError(t, os.WriteFile(file, []byte("123"), 0o644))
	require.ErrorContains(t, r.write(io.Discard), "changed while the image was built")

	require.NoError(t, os.WriteFile(file, []byte("1234567"), 0o644))
	require.ErrorContains(t, r.write(io.Discard), "grew while the image was built")
}
