package main

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
	"github.com/stretchr/testify/require"
)

// Test binaries, made once by TestMain. hello is a real static Go binary
// for runtime.GOARCH; tiny is a 120-byte ELF header for the same
// architecture that no kernel could run but that passes for a static
// executable. The race detector slows gzip twentyfold, so only the test
// that checks the binary's bytes pays for compressing a real one.
var hello, tiny string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ociimage-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hello, err = buildHello(dir)
	if err == nil {
		tiny, err = writeTinyELF(dir)
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func buildHello(dir string) (string, error) {
	src := filepath.Join(dir, "hello.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"hello from scratch\") }\n"), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hello")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH, "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the test binary (needs Go on PATH): %w\n%s", err, out)
	}
	return bin, nil
}

func writeTinyELF(dir string) (string, error) {
	machine, ok := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[runtime.GOARCH]
	if !ok {
		return "", fmt.Errorf("no test ELF for GOARCH=%s", runtime.GOARCH)
	}
	var buf bytes.Buffer
	err := errors.Join(
		binary.Write(&buf, binary.LittleEndian, elf.Header64{
			Ident:     [elf.EI_NIDENT]byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)},
			Type:      uint16(elf.ET_EXEC),
			Machine:   uint16(machine),
			Version:   uint32(elf.EV_CURRENT),
			Entry:     0x400078,
			Phoff:     64,
			Ehsize:    64,
			Phentsize: 56,
			Phnum:     1,
		}),
		binary.Write(&buf, binary.LittleEndian, elf.Prog64{
			Type:   uint32(elf.PT_LOAD),
			Flags:  uint32(elf.PF_R | elf.PF_X),
			Vaddr:  0x400000,
			Paddr:  0x400000,
			Filesz: 120,
			Memsz:  120,
			Align:  0x1000,
		}),
	)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "tiny")
	return path, os.WriteFile(path, buf.Bytes(), 0o755)
}

// build runs the command with the given flags after -binary (tiny), -arch
// and -ca-certs (a small test bundle), and SOURCE_DATE_EPOCH=epoch unless
// empty. It returns stdout.
func build(t *testing.T, epoch string, args ...string) (string, error) {
	t.Helper()
	certs := filepath.Join(t.TempDir(), "certs.pem")
	require.NoError(t, os.WriteFile(certs, []byte("-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n"), 0o644))
	args = append([]string{"-binary", tiny, "-arch", runtime.GOARCH, "-ca-certs", certs}, args...)
	getenv := func(key string) string {
		if key == "SOURCE_DATE_EPOCH" {
			return epoch
		}
		return ""
	}
	var stdout, stderr bytes.Buffer
	err := run(args, getenv, &stdout, &stderr)
	return stdout.String(), err
}

// webTree is a small stand-in for clients/web/dist.
func webTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "assets"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "index.html"), []byte("<!doctype html>"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "assets", "app.js"), []byte("console.log(1)"), 0o644))
	return dir
}

// readOCIArchive unpacks an OCI archive and opens it with
// go-containerregistry's layout reader, checking every digest and size.
func readOCIArchive(t *testing.T, path string) (v1.IndexManifest, v1.Image) {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		target := filepath.Join(dir, filepath.FromSlash(hdr.Name))
		if hdr.Typeflag == tar.TypeDir {
			require.NoError(t, os.MkdirAll(target, 0o755))
			continue
		}
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(target, data, 0o644))
	}
	idx, err := layout.ImageIndexFromPath(dir)
	require.NoError(t, err)
	im, err := idx.IndexManifest()
	require.NoError(t, err)
	require.Len(t, im.Manifests, 1)
	img, err := idx.Image(im.Manifests[0].Digest)
	require.NoError(t, err)
	require.NoError(t, validate.Image(img))
	return *im, img
}

// layerFiles reads the image's only layer.
func layerFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		require.NoError(t, err)
		data, err := io.ReadAll(tr)
		require.NoError(t, err)
		files["/"+strings.TrimSuffix(hdr.Name, "/")] = file{hdr: hdr, data: data}
	}
}

type file struct {
	hdr  *tar.Header
	data []byte
}

func TestOCIArchive(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "images", "app.tar")
	stdout, err := build(t, "1700000000",
		"-binary", hello, "-tag", "parley/app:dev", "-o", out, "-name", "app",
		"-add", webTree(t)+":/usr/share/parley/web",
		"-dir", "/var/lib/parley:65532",
		"-env", "PARLEY_LISTEN=:8080", "-env", "PARLEY_DATA_DIR=/var/lib/parley",
		"-port", "8080/tcp", "-port", "9090",
		"-cmd", "-log-format", "-cmd", "json",
		"-workdir", "/var/lib/parley",
		"-version", "v1.2.3-4-gabcdef", "-revision", "abcdef0123",
	)
	require.NoError(t, err)

	index, img := readOCIArchive(t, out)
	digest, err := img.Digest()
	require.NoError(t, err)
	require.Contains(t, stdout, out+": parley/app:dev "+digest.String()+" (oci archive,")

	desc := index.Manifests[0]
	require.Equal(t, types.OCIImageIndex, index.MediaType)
	require.Equal(t, types.OCIManifestSchema1, desc.MediaType)
	require.Equal(t, map[string]string{
		"org.opencontainers.image.ref.name": "parley/app:dev",
		"io.containerd.image.name":          "docker.io/parley/app:dev",
	}, desc.Annotations)
	require.Equal(t, &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, desc.Platform)

	cf, err := img.ConfigFile()
	require.NoError(t, err)
	created := time.Unix(1700000000, 0).UTC()
	require.Equal(t, runtime.GOARCH, cf.Architecture)
	require.Equal(t, "linux", cf.OS)
	require.Equal(t, created, cf.Created.UTC())
	require.Equal(t, []string{"/usr/local/bin/app"}, cf.Config.Entrypoint)
	require.Equal(t, []string{"-log-format", "json"}, cf.Config.Cmd)
	require.Equal(t, "65532:65532", cf.Config.User)
	require.Equal(t, "/var/lib/parley", cf.Config.WorkingDir)
	require.Equal(t, []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"PARLEY_LISTEN=:8080",
		"PARLEY_DATA_DIR=/var/lib/parley",
	}, cf.Config.Env)
	require.Equal(t, map[string]struct{}{"8080/tcp": {}, "9090/tcp": {}}, cf.Config.ExposedPorts)
	require.Equal(t, map[string]string{
		"org.opencontainers.image.title":    "app",
		"org.opencontainers.image.source":   "https://github.com/parley-im/parley",
		"org.opencontainers.image.version":  "v1.2.3-4-gabcdef",
		"org.opencontainers.image.revision": "abcdef0123",
		"org.opencontainers.image.created":  "2023-11-14T22:13:20Z",
	}, cf.Config.Labels)

	files := layerFiles(t, img)
	want, err := os.ReadFile(hello)
	require.NoError(t, err)
	bin := files["/usr/local/bin/app"]
	require.Equal(t, want, bin.data, "the binary, byte for byte")
	require.Equal(t, os.FileMode(0o755), bin.hdr.FileInfo().Mode())
	require.Equal(t, 0, bin.hdr.Uid, "root owns the binary: the nonroot user cannot replace it")

	require.Contains(t, string(files["/etc/passwd"].data), "\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
	require.Contains(t, string(files["/etc/group"].data), "\nnonroot:x:65532:\n")
	require.Equal(t, os.ModeDir|os.ModeSticky|0o777, files["/tmp"].hdr.FileInfo().Mode())
	require.Contains(t, string(files["/etc/ssl/certs/ca-certificates.crt"].data), "BEGIN CERTIFICATE")

	data := files["/var/lib/parley"].hdr
	require.Equal(t, os.ModeDir|0o755, data.FileInfo().Mode())
	require.Equal(t, 65532, data.Uid)
	require.Equal(t, 65532, data.Gid)

	require.Equal(t, "<!doctype html>", string(files["/usr/share/parley/web/index.html"].data))
	require.Equal(t, "console.log(1)", string(files["/usr/share/parley/web/assets/app.js"].data))
	for path, f := range files {
		require.Equal(t, created, f.hdr.ModTime.UTC(), "mtime of %s", path)
	}
}

func TestDockerArchive(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	args := []string{"-tag", "parley/app:dev", "-port", "8080/tcp", "-env", "A=1"}
	_, err := build(t, "", append(args, "-o", filepath.Join(dir, "oci.tar"))...)
	require.NoError(t, err)
	docker := filepath.Join(dir, "docker.tar")
	stdout, err := build(t, "", append(args, "-o", docker, "-format", "docker")...)
	require.NoError(t, err)

	tag, err := name.NewTag("parley/app:dev")
	require.NoError(t, err)
	img, err := tarball.ImageFromPath(docker, &tag)
	require.NoError(t, err)
	require.NoError(t, validate.Image(img))
	m, err := tarball.LoadManifest(func() (io.ReadCloser, error) { return os.Open(docker) })
	require.NoError(t, err)
	require.Len(t, m, 1)
	require.Equal(t, []string{"parley/app:dev"}, m[0].RepoTags)

	// The same image in both formats: the config, what docker names an
	// image by (its ID), is the same blob.
	_, ociImg := readOCIArchive(t, filepath.Join(dir, "oci.tar"))
	ociID, err := ociImg.ConfigName()
	require.NoError(t, err)
	dockerID, err := img.ConfigName()
	require.NoError(t, err)
	require.Equal(t, ociID, dockerID)
	require.Contains(t, stdout, " id "+dockerID.String()+" (docker archive,")

	cf, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "65532:65532", cf.Config.User)
	require.Equal(t, time.Unix(0, 0).UTC(), cf.Created.UTC(), "no SOURCE_DATE_EPOCH: the epoch, not the clock")
	files := layerFiles(t, img)
	require.Contains(t, files, "/usr/local/bin/tiny")
}

func TestReproducible(t *testing.T) {
	t.Parallel()
	web := webTree(t)
	extra := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(extra, "config.yaml"), []byte("a: 1"), 0o644))
	dir := t.TempDir()
	buildTo := func(out, epoch string, adds ...string) []byte {
		t.Helper()
		args := []string{"-tag", "parley/app:dev", "-o", filepath.Join(dir, out), "-dir", "/var/lib/parley", "-env", "A=1", "-port", "8080"}
		for _, a := range adds {
			args = append(args, "-add", a)
		}
		_, err := build(t, epoch, args...)
		require.NoError(t, err)
		b, err := os.ReadFile(filepath.Join(dir, out))
		require.NoError(t, err)
		return b
	}
	webAdd, extraAdd := web+":/usr/share/parley/web", extra+":/etc/parley"

	first := buildTo("1.tar", "1700000000", webAdd, extraAdd)

	// What differs between machines and checkouts must not matter: file
	// mtimes, permission bits the umask decides, the order of -add.
	later := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(web, "index.html"), later, later))
	require.NoError(t, os.Chmod(filepath.Join(web, "index.html"), 0o600))
	require.NoError(t, os.Chmod(filepath.Join(web, "assets"), 0o700))
	second := buildTo("2.tar", "1700000000", extraAdd, webAdd)
	require.True(t, bytes.Equal(first, second), "two builds of the same inputs differ")

	// The creation time does matter, and so does content.
	otherTime := buildTo("3.tar", "1700000001", webAdd, extraAdd)
	require.False(t, bytes.Equal(first, otherTime), "SOURCE_DATE_EPOCH is ignored")
	require.NoError(t, os.WriteFile(filepath.Join(web, "index.html"), []byte("<!doctype html>!"), 0o644))
	otherContent := buildTo("4.tar", "1700000000", webAdd, extraAdd)
	require.False(t, bytes.Equal(first, otherContent), "a changed file is ignored")
}

func TestErrors(t *testing.T) {
	t.Parallel()
	web := webTree(t)
	notELF := filepath.Join(t.TempDir(), "script.sh")
	require.NoError(t, os.WriteFile(notELF, []byte("#!/bin/sh\necho hi\n"), 0o755))
	otherArch := "arm64"
	if runtime.GOARCH == "arm64" {
		otherArch = "amd64"
	}
	tests := []struct {
		name    string
		epoch   string
		args    []string
		wantErr string
	}{
		{name: "missing_binary", args: []string{"-binary", "/nonexistent/parleyd"}, wantErr: "binary: open /nonexistent/parleyd: no such file or directory"},
		{name: "no_binary", args: []string{"-binary", ""}, wantErr: "-binary is required"},
		{name: "not_an_executable", args: []string{"-binary", notELF}, wantErr: notELF + ": not a Linux executable"},
		// /bin/true is dynamically linked on every glibc or musl system.
		{name: "dynamically_linked", args: []string{"-binary", "/bin/true"}, wantErr: "dynamically linked (needs /lib"},
		{name: "wrong_arch", args: []string{"-arch", otherArch}, wantErr: "built for " + runtime.GOARCH + ", not " + otherArch + ": build it with GOARCH=" + otherArch},
		{name: "unknown_arch", args: []string{"-arch", "vax"}, wantErr: `unsupported architecture "vax" (one of amd64, arm64`},
		{name: "add_without_colon", args: []string{"-add", web}, wantErr: "-add \"" + web + "\": want SRC:DST"},
		{name: "add_relative_destination", args: []string{"-add", web + ":srv/web"}, wantErr: "want SRC:DST, DST an absolute path"},
		{name: "add_empty_source", args: []string{"-add", ":/srv/web"}, wantErr: "want SRC:DST"},
		{name: "add_missing_source", args: []string{"-add", "/nonexistent/dist:/srv/web"}, wantErr: "add /nonexistent/dist:/srv/web: "},
		{name: "add_over_a_base_file", args: []string{"-add", filepath.Join(web, "index.html") + ":/etc/passwd"}, wantErr: "/etc/passwd: added twice"},
		{name: "dir_bad_uid", args: []string{"-dir", "/data:nonroot"}, wantErr: `-dir "/data:nonroot": want PATH[:UID[:GID]]`},
		{name: "dir_relative", args: []string{"-dir", "data"}, wantErr: `-dir "data": want PATH[:UID[:GID]]`},
		{name: "bad_env", args: []string{"-env", "NOVALUE"}, wantErr: `env "NOVALUE": want KEY=VALUE`},
		{name: "bad_port", args: []string{"-port", "http"}, wantErr: `port "http": want a number`},
		{name: "bad_format", args: []string{"-format", "tgz"}, wantErr: `-format "tgz": want oci or docker`},
		{name: "bad_tag", args: []string{"-tag", "Parley/App:dev"}, wantErr: "-tag: "},
		{name: "no_tag", args: []string{"-tag", ""}, wantErr: "-tag is required"},
		{name: "no_output", args: []string{"-o", ""}, wantErr: "-o is required"},
		{name: "missing_ca_certs", args: []string{"-ca-certs", "/nonexistent/ca.crt"}, wantErr: "CA certificates: stat /nonexistent/ca.crt: no such file or directory"},
		{name: "bad_source_date_epoch", epoch: "yesterday", wantErr: `SOURCE_DATE_EPOCH="yesterday": want a non-negative number of seconds`},
		{name: "stray_argument", args: []string{"extra"}, wantErr: "unexpected arguments: extra"},
		{name: "unknown_flag", args: []string{"-nosuch"}, wantErr: "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out := filepath.Join(t.TempDir(), "image.tar")
			args := append([]string{"-tag", "parley/app:dev", "-o", out}, tt.args...)
			_, err := build(t, tt.epoch, args...)
			require.ErrorContains(t, err, tt.wantErr)
			entries, readErr := os.ReadDir(filepath.Dir(out))
			require.NoError(t, readErr)
			require.Empty(t, entries, "a failed build leaves nothing behind")
		})
	}
}

func TestNoCACerts(t *testing.T) {
	t.Parallel()
	out := filepath.Join(t.TempDir(), "image.tar")
	_, err := build(t, "", "-tag", "parley/app", "-o", out, "-ca-certs", "")
	require.NoError(t, err)
	index, img := readOCIArchive(t, out)
	require.Equal(t, "parley/app:latest", index.Manifests[0].Annotations["org.opencontainers.image.ref.name"])
	require.NotContains(t, layerFiles(t, img), "/etc/ssl/certs/ca-certificates.crt")
}
