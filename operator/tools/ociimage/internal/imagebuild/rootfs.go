package imagebuild

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The users and groups of /etc/passwd and /etc/group, as in distroless:
// root, nobody, and the nonroot user the image runs as.
const (
	passwd = `root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
`
	group = `root:x:0:
nobody:x:65534:
nonroot:x:65532:
`
	// Go's resolver reads nsswitch.conf to order /etc/hosts before DNS; a
	// missing file leaves the order to built-in guesses.
	nsswitch = "hosts: files dns\n"
)

// rootfs is the layer's file tree, keyed by clean path without the leading
// slash ("usr/local/bin/parleyd"). It is written in path order, so the same
// inputs give the same tar bytes whatever order they were added in.
type rootfs struct {
	mtime   time.Time
	entries map[string]*entry
}

// entry is one tar member: its header and where its bytes come from.
type entry struct {
	hdr tar.Header
	// src is a file on the build machine, read when the tar is written;
	// empty means data.
	src  string
	data []byte
	// implied marks a parent directory created because something below it
	// was added: an explicit directory at the same path replaces it.
	implied bool
}

func newRootfs(mtime time.Time) *rootfs {
	return &rootfs{mtime: mtime.UTC().Truncate(time.Second), entries: map[string]*entry{}}
}

// addBase adds the files every image gets: users and groups, nsswitch.conf,
// a sticky world-writable /tmp and the nonroot user's home.
func (r *rootfs) addBase() error {
	return errors.Join(
		r.addData("/etc/passwd", []byte(passwd), 0o644),
		r.addData("/etc/group", []byte(group), 0o644),
		r.addData("/etc/nsswitch.conf", []byte(nsswitch), 0o644),
		r.addDir("/tmp", 0o1777, 0, 0),
		r.addDir("/home/nonroot", 0o700, NonRootID, NonRootID),
	)
}

// addData adds a regular file owned by root holding data.
func (r *rootfs) addData(dst string, data []byte, mode int64) error {
	return r.add(dst, &entry{
		hdr:  tar.Header{Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(data))},
		data: data,
	})
}

// addFile adds the regular file src, owned by root, with the given mode.
func (r *rootfs) addFile(dst, src string, mode int64) error {
	info, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", src)
	}
	return r.add(dst, &entry{
		hdr: tar.Header{Typeflag: tar.TypeReg, Mode: mode, Size: info.Size()},
		src: src,
	})
}

// addDir adds an empty directory owned by uid:gid.
func (r *rootfs) addDir(dst string, mode int64, uid, gid int) error {
	return r.add(dst, &entry{hdr: tar.Header{Typeflag: tar.TypeDir, Mode: mode, Uid: uid, Gid: gid}})
}

// addTree copies src, a file or a directory tree, to dst, owned by root.
// Modes are normalised to 0755 (directories, and files with any execute
// bit) or 0644: a checkout's modes depend on the umask of whoever cloned
// it, and the image must not. Symbolic links below src are kept as links;
// other special files are refused.
func (r *rootfs) addTree(src, dst string) error {
	// WalkDir does not follow a symbolic link at its root: resolve it, so
	// a dist/ that is a link to the real output still copies.
	root, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		target := path.Join(dst, filepath.ToSlash(rel))
		switch t := d.Type(); {
		case t.IsDir():
			return r.addDir(target, 0o755, 0, 0)
		case t.IsRegular():
			info, err := d.Info()
			if err != nil {
				return err
			}
			mode := int64(0o644)
			if info.Mode()&0o111 != 0 {
				mode = 0o755
			}
			return r.addFile(target, p, mode)
		case t&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return r.add(target, &entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Mode: 0o777, Linkname: link}})
		default:
			return fmt.Errorf("%s: not a regular file, directory or symbolic link (mode %s)", p, t)
		}
	})
}

// add puts e at dst (an absolute path in the image), creating missing
// parent directories (0755, root). A path may be given once, except that a
// directory may be repeated with the same owner and mode, and an explicit
// directory replaces an implied one.
func (r *rootfs) add(dst string, e *entry) error {
	name, err := entryName(dst)
	if err != nil {
		return err
	}
	if name == "" {
		if e.hdr.Typeflag != tar.TypeDir {
			return errors.New("/ is a directory")
		}
		return nil // the root itself is never a tar member
	}
	if err := r.addParents(name); err != nil {
		return err
	}
	e.hdr.Name = name
	old, ok := r.entries[name]
	if !ok {
		r.entries[name] = e
		return nil
	}
	bothDirs := old.hdr.Typeflag == tar.TypeDir && e.hdr.Typeflag == tar.TypeDir
	switch {
	case bothDirs && old.implied:
		r.entries[name] = e
		return nil
	case bothDirs && sameOwnerAndMode(old.hdr, e.hdr):
		return nil
	case bothDirs:
		return fmt.Errorf("/%s: directory given twice with different owners or modes", name)
	default:
		return fmt.Errorf("/%s: added twice", name)
	}
}

func (r *rootfs) addParents(name string) error {
	for dir := path.Dir(name); dir != "."; dir = path.Dir(dir) {
		if old, ok := r.entries[dir]; ok {
			if old.hdr.Typeflag != tar.TypeDir {
				return fmt.Errorf("/%s: needed as a directory but already added as a file", dir)
			}
			// Its own parents were added with it.
			return nil
		}
		r.entries[dir] = &entry{hdr: tar.Header{Name: dir, Typeflag: tar.TypeDir, Mode: 0o755}, implied: true}
	}
	return nil
}

// write writes the tree as an uncompressed tar in path order (a parent
// sorts before its children), every member with the tree's mtime.
func (r *rootfs) write(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, name := range slices.Sorted(maps.Keys(r.entries)) {
		e := r.entries[name]
		hdr := e.hdr
		hdr.ModTime = r.mtime
		if hdr.Typeflag == tar.TypeDir {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("/%s: %w", name, err)
		}
		if err := e.writeBody(tw); err != nil {
			return fmt.Errorf("/%s: %w", name, err)
		}
	}
	return tw.Close()
}

func (e *entry) writeBody(w io.Writer) error {
	if e.hdr.Typeflag != tar.TypeReg {
		return nil
	}
	if e.src == "" {
		_, err := w.Write(e.data)
		return err
	}
	f, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	// Copy exactly the size the header promised: a file that changed
	// since it was added fails here instead of corrupting the tar.
	if _, err := io.CopyN(w, f, e.hdr.Size); err != nil {
		return fmt.Errorf("%s changed while the image was built: %w", e.src, err)
	}
	if n, _ := f.Read(make([]byte, 1)); n > 0 {
		return fmt.Errorf("%s grew while the image was built", e.src)
	}
	return nil
}

// entryName turns an absolute image path into a tar member name: clean,
// without the leading slash; "" is the root.
func entryName(dst string) (string, error) {
	if !strings.HasPrefix(dst, "/") {
		return "", fmt.Errorf("%q: image paths must be absolute", dst)
	}
	return strings.TrimPrefix(path.Clean(dst), "/"), nil
}

func sameOwnerAndMode(a, b tar.Header) bool {
	return a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid
}
