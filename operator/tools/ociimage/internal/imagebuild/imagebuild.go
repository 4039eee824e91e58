// Package imagebuild assembles a container image from a static Linux
// binary without a container engine or a registry: an empty (scratch)
// base, one layer holding the binary, users and groups, /tmp, CA
// certificates and any extra files, and a config that runs the binary as
// an unprivileged user.
//
// Images are reproducible: the same Spec and input files give the same
// bytes, whoever builds them, since every member of the layer has a fixed
// owner and the Spec's mtime, members are sorted by path, and nothing
// depends on the build machine's clock. (The layer is gzipped by Go's
// compress/gzip, so a Go release that changes its output changes the
// digest.)
package imagebuild

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// NonRootID is the uid and gid of the "nonroot" user images run as
	// (distroless's number, so volumes prepared for either work for both).
	NonRootID = 65532
	// BinDir holds the binary in the image.
	BinDir = "/usr/local/bin"
	// CACertsPath is where Go's crypto/x509 looks first for the system
	// roots on Linux.
	CACertsPath = "/etc/ssl/certs/ca-certificates.crt"
	// DefaultArch is the architecture when Spec.Arch is empty.
	DefaultArch = "amd64"

	// defaultPath is the PATH of images whose Spec sets none.
	defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Label keys, from the OCI image spec's pre-defined annotations.
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelSource   = "org.opencontainers.image.source"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelCreated  = "org.opencontainers.image.created"
)

// Copy copies Src, a file or directory tree on the build machine, to Dst,
// an absolute path in the image.
type Copy struct {
	Src string
	Dst string
}

// Dir is an empty directory created in the image, owned by UID:GID with
// mode 0755: somewhere the unprivileged user can write.
type Dir struct {
	Path string
	UID  int
	GID  int
}

// Spec describes an image. Only Binary is required.
type Spec struct {
	// Binary is a statically linked Linux executable on the build machine.
	// It becomes the entrypoint, at BinDir/Name with mode 0755.
	Binary string
	// Name is the binary's file name in the image; empty means Binary's
	// base name. It is also the default title label.
	Name string
	// Files are copied into the image, owned by root (see Copy).
	Files []Copy
	// Dirs are created empty.
	Dirs []Dir
	// CACerts is a PEM bundle on the build machine copied to CACertsPath;
	// empty copies none.
	CACerts string
	// Cmd is the default arguments to the entrypoint; nil means none.
	Cmd []string
	// Env is KEY=VALUE pairs. A PATH is added unless one is given.
	Env []string
	// Ports are exposed ports, "8080/tcp" or "8080" (tcp).
	Ports []string
	// WorkingDir is the container's working directory; empty means "/".
	WorkingDir string
	// Arch is a GOARCH the binary must have been built for; the OS is
	// always linux. Empty means DefaultArch.
	Arch string
	// Created is the image's creation time and every file's mtime; the
	// zero value means the Unix epoch. Keep it a function of the sources
	// (a commit's time), never the clock, or no two builds agree.
	Created time.Time
	// Title, Source, Version and Revision fill the org.opencontainers.image
	// labels of the same names; empty leaves a label out, except Title,
	// which defaults to Name.
	Title    string
	Source   string
	Version  string
	Revision string
}

// Build assembles the image described by s. The image holds the layer in
// memory, compressed; its bytes are produced by WriteOCIArchive or
// WriteDockerArchive. The error names the flag-level input at fault: a
// missing or dynamically linked binary, a bad path, a path added twice, a
// malformed environment variable or port.
func Build(s Spec) (v1.Image, error) {
	if s.Binary == "" {
		return nil, errors.New("no binary given")
	}
	if s.Arch == "" {
		s.Arch = DefaultArch
	}
	if err := checkStatic(s.Binary, s.Arch); err != nil {
		return nil, err
	}
	if s.Name == "" {
		s.Name = filepath.Base(s.Binary)
	}
	if strings.Contains(s.Name, "/") || s.Name == "." || s.Name == ".." {
		return nil, fmt.Errorf("binary name %q: not a file name", s.Name)
	}
	created := time.Unix(0, 0).UTC()
	if !s.Created.IsZero() {
		created = s.Created.UTC().Truncate(time.Second)
	}
	entrypoint := path.Join(BinDir, s.Name)

	layer, err := buildLayer(s, entrypoint, created)
	if err != nil {
		return nil, err
	}
	cfg, err := buildConfig(s, entrypoint, created)
	if err != nil {
		return nil, err
	}

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "ociimage " + entrypoint,
			Comment:   "static binary on scratch",
		},
	})
	if err != nil {
		return nil, err
	}
	// Append filled in the layer's diff ID and history: keep them.
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = s.Arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: created}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

func buildLayer(s Spec, entrypoint string, created time.Time) (v1.Layer, error) {
	fs := newRootfs(created)
	if err := fs.addBase(); err != nil {
		return nil, err
	}
	if err := fs.addFile(entrypoint, s.Binary, 0o755); err != nil {
		return nil, fmt.Errorf("binary: %w", err)
	}
	if s.CACerts != "" {
		if err := fs.addFile(CACertsPath, s.CACerts, 0o644); err != nil {
			return nil, fmt.Errorf("CA certificates: %w", err)
		}
	}
	for _, d := range s.Dirs {
		if err := fs.addDir(d.Path, 0o755, d.UID, d.GID); err != nil {
			return nil, fmt.Errorf("dir %s: %w", d.Path, err)
		}
	}
	for _, c := range s.Files {
		if err := fs.addTree(c.Src, c.Dst); err != nil {
			return nil, fmt.Errorf("add %s:%s: %w", c.Src, c.Dst, err)
		}
	}
	var tarball bytes.Buffer
	if err := fs.write(&tarball); err != nil {
		return nil, err
	}
	return layerFromTar(tarball.Bytes())
}

func layerFromTar(b []byte) (v1.Layer, error) {
	return tarball.LayerFromOpener(
		func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer),
		// ggcr's default, BestSpeed, leaves parleyd's layer 8% larger for
		// every pull, to save 2 s per build; BestCompression takes 3x as
		// long as this level for 0.2% less.
		tarball.WithCompressionLevel(gzip.DefaultCompression),
		// The digest is computed from the compressed bytes and the
		// archive writes them again: compress once.
		tarball.WithCompressedCaching,
	)
}

func buildConfig(s Spec, entrypoint string, created time.Time) (v1.Config, error) {
	env, err := environment(s.Env)
	if err != nil {
		return v1.Config{}, err
	}
	ports, err := exposedPorts(s.Ports)
	if err != nil {
		return v1.Config{}, err
	}
	workingDir := s.WorkingDir
	if workingDir == "" {
		workingDir = "/"
	}
	if !path.IsAbs(workingDir) {
		return v1.Config{}, fmt.Errorf("working dir %q: must be absolute", workingDir)
	}
	title := s.Title
	if title == "" {
		title = s.Name
	}
	labels := map[string]string{
		LabelTitle:   title,
		LabelCreated: created.Format(time.RFC3339),
	}
	for key, value := range map[string]string{LabelSource: s.Source, LabelVersion: s.Version, LabelRevision: s.Revision} {
		if value != "" {
			labels[key] = value
		}
	}
	return v1.Config{
		Entrypoint:   []string{entrypoint},
		Cmd:          s.Cmd,
		User:         fmt.Sprintf("%d:%d", NonRootID, NonRootID),
		Env:          env,
		ExposedPorts: ports,
		WorkingDir:   path.Clean(workingDir),
		Labels:       labels,
	}, nil
}

// environment checks KEY=VALUE pairs, refuses a key given twice, and puts
// a default PATH first unless one is given.
func environment(vars []string) ([]string, error) {
	seen := map[string]bool{}
	for _, kv := range vars {
		key, _, ok := strings.Cut(kv, "=")
		if !ok || key == "" {
			return nil, fmt.Errorf("env %q: want KEY=VALUE", kv)
		}
		if seen[key] {
			return nil, fmt.Errorf("env %s: given twice", key)
		}
		seen[key] = true
	}
	if seen["PATH"] {
		return vars, nil
	}
	return append([]string{defaultPath}, vars...), nil
}

// exposedPorts parses "8080/tcp", "53/udp" or "8080" (tcp).
func exposedPorts(specs []string) (map[string]struct{}, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	ports := make(map[string]struct{}, len(specs))
	for _, spec := range specs {
		num, proto, ok := strings.Cut(spec, "/")
		if !ok {
			proto = "tcp"
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q: want a number from 1 to 65535, then optionally /tcp, /udp or /sctp", spec)
		}
		switch proto {
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("port %q: protocol must be tcp, udp or sctp", spec)
		}
		ports[strconv.Itoa(n)+"/"+proto] = struct{}{}
	}
	return ports, nil
}
