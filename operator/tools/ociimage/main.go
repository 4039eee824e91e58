// Command ociimage builds a container image from a static Linux binary
// without a container engine: scratch plus one layer (the binary, users
// and groups, /tmp, CA certificates, extra files), written as an OCI
// archive (podman load, skopeo copy oci-archive:, ctr import) or a docker
// save tarball (docker load). The output is reproducible: the same inputs
// and SOURCE_DATE_EPOCH give the same bytes.
//
//	CGO_ENABLED=0 go build -trimpath -o bin/parleyd ./server/cmd/parleyd
//	go run ./operator/tools/ociimage -binary bin/parleyd -tag parley/parleyd:dev \
//		-o bin/images/parleyd.tar -port 8080/tcp -dir /var/lib/parley:65532
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/parley-im/parley/operator/tools/ociimage/internal/imagebuild"
)

// systemCACerts is the Debian/Ubuntu/Alpine CA bundle. parleyd talks TLS
// to PostgreSQL, Redis and S3 and the operator to the Kubernetes API, and
// scratch has no roots of its own: without a bundle every certificate
// signed by a public CA fails to verify.
const systemCACerts = "/etc/ssl/certs/ca-certificates.crt"

// errUsage marks a command-line error the flag package has already
// printed with the usage.
var errUsage = errors.New("usage")

func main() {
	err := run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "ociimage:", err)
		os.Exit(1)
	}
}

// run builds the image args describe, reading SOURCE_DATE_EPOCH through
// getenv, and reports the written file on stdout and notices on stderr.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var (
		spec    imagebuild.Spec
		out     string
		tagName string
		format  string
		adds    listFlag
		dirs    listFlag
		envs    listFlag
		ports   listFlag
		cmd     listFlag
	)
	fs := flag.NewFlagSet("ociimage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: ociimage -binary FILE -tag NAME[:TAG] -o FILE [flags]")
		fmt.Fprintln(fs.Output(), "Builds a scratch image running FILE as uid/gid 65532. Set SOURCE_DATE_EPOCH for the creation time (default: the Unix epoch).")
		fs.PrintDefaults()
	}
	fs.StringVar(&spec.Binary, "binary", "", "statically linked Linux `executable` to run (CGO_ENABLED=0)")
	fs.StringVar(&spec.Name, "name", "", "`file name` of the binary in "+imagebuild.BinDir+" (default: the binary's)")
	fs.StringVar(&out, "o", "", "output `file`; its directory is created")
	fs.StringVar(&tagName, "tag", "", "image `name`, such as parley/parleyd:dev")
	fs.StringVar(&format, "format", "oci", "oci (OCI archive: podman load, skopeo, ctr import) or docker (docker load)")
	fs.Var(&adds, "add", "copy `SRC:DST`, a file or directory tree, into the image (repeatable)")
	fs.Var(&dirs, "dir", "create an empty directory `PATH[:UID[:GID]]`, owned by 65532 unless given (repeatable)")
	fs.StringVar(&spec.CACerts, "ca-certs", systemCACerts, "CA `bundle` copied to "+imagebuild.CACertsPath+"; empty for none. The default is skipped with a notice when missing")
	fs.Var(&envs, "env", "environment variable `KEY=VALUE` (repeatable)")
	fs.Var(&ports, "port", "exposed `port`, such as 8080/tcp (repeatable)")
	fs.Var(&cmd, "cmd", "default `argument` to the binary (repeatable, in order)")
	fs.StringVar(&spec.WorkingDir, "workdir", "/", "working `directory`")
	fs.StringVar(&spec.Arch, "arch", imagebuild.DefaultArch, "`GOARCH` the binary was built for (the OS is linux)")
	fs.StringVar(&spec.Title, "title", "", "org.opencontainers.image.title `label` (default: the binary's name)")
	fs.StringVar(&spec.Source, "source", "https://github.com/parley-im/parley", "org.opencontainers.image.source `URL`")
	fs.StringVar(&spec.Version, "version", "", "org.opencontainers.image.version `label`, such as git describe's")
	fs.StringVar(&spec.Revision, "revision", "", "org.opencontainers.image.revision `label`: the commit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}

	switch {
	case spec.Binary == "":
		return errors.New("-binary is required")
	case tagName == "":
		return errors.New("-tag is required")
	case out == "":
		return errors.New("-o is required")
	case format != "oci" && format != "docker":
		return fmt.Errorf("-format %q: want oci or docker", format)
	}
	tag, err := name.NewTag(tagName)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	if spec.Files, err = parseAdds(adds); err != nil {
		return err
	}
	if spec.Dirs, err = parseDirs(dirs); err != nil {
		return err
	}
	spec.Env, spec.Ports, spec.Cmd = envs, ports, cmd
	if spec.Created, err = sourceDateEpoch(getenv("SOURCE_DATE_EPOCH")); err != nil {
		return err
	}
	if spec.CACerts == systemCACerts && !flagSet(fs, "ca-certs") {
		if _, err := os.Stat(systemCACerts); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "ociimage: no %s on this machine: the image gets no CA certificates, so TLS to public CAs will not verify (install ca-certificates, or pass -ca-certs)\n", systemCACerts)
			spec.CACerts = ""
		}
	}

	img, err := imagebuild.Build(spec)
	if err != nil {
		return err
	}
	size, err := writeAtomic(out, func(w io.Writer) error {
		if format == "docker" {
			return imagebuild.WriteDockerArchive(w, img, tag)
		}
		return imagebuild.WriteOCIArchive(w, img, tag)
	})
	if err != nil {
		return err
	}
	return report(stdout, out, format, tag, img, size)
}

// report prints what was written: the manifest digest (what a registry
// and ctr show) and, for docker, the image ID docker images shows.
func report(w io.Writer, out, format string, tag name.Tag, img v1.Image, size int64) error {
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	id := ""
	if format == "docker" {
		config, err := img.ConfigName()
		if err != nil {
			return err
		}
		id = " id " + config.String()
	}
	_, err = fmt.Fprintf(w, "%s: %s %s%s (%s archive, %.1f MiB)\n", out, tag, digest, id, format, float64(size)/(1<<20))
	return err
}

// writeAtomic writes path through write, via a temporary file renamed into
// place, so a failed build never leaves a truncated image behind.
func writeAtomic(path string, write func(io.Writer) error) (int64, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name()) // fails harmlessly once renamed
	if err := write(f); err != nil {
		f.Close()
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("write %s: %w", path, err)
	}
	return info.Size(), os.Rename(f.Name(), path)
}

// parseAdds parses -add SRC:DST, splitting at the last colon (DST is an
// absolute path in the image, and rarely holds one).
func parseAdds(specs []string) ([]imagebuild.Copy, error) {
	copies := make([]imagebuild.Copy, 0, len(specs))
	for _, s := range specs {
		i := strings.LastIndex(s, ":")
		if i <= 0 || !strings.HasPrefix(s[i+1:], "/") {
			return nil, fmt.Errorf("-add %q: want SRC:DST, DST an absolute path in the image", s)
		}
		copies = append(copies, imagebuild.Copy{Src: s[:i], Dst: s[i+1:]})
	}
	return copies, nil
}

// parseDirs parses -dir PATH[:UID[:GID]]; UID defaults to the nonroot
// user's, GID to UID.
func parseDirs(specs []string) ([]imagebuild.Dir, error) {
	dirs := make([]imagebuild.Dir, 0, len(specs))
	for _, s := range specs {
		parts := strings.Split(s, ":")
		d := imagebuild.Dir{Path: parts[0], UID: imagebuild.NonRootID, GID: imagebuild.NonRootID}
		bad := len(parts) > 3 || !strings.HasPrefix(d.Path, "/")
		var err error
		if !bad && len(parts) > 1 {
			d.UID, err = strconv.Atoi(parts[1])
			d.GID = d.UID
			bad = err != nil || d.UID < 0
		}
		if !bad && len(parts) > 2 {
			d.GID, err = strconv.Atoi(parts[2])
			bad = err != nil || d.GID < 0
		}
		if bad {
			return nil, fmt.Errorf("-dir %q: want PATH[:UID[:GID]], PATH absolute, ids numeric", s)
		}
		dirs = append(dirs, d)
	}
	return dirs, nil
}

// sourceDateEpoch parses SOURCE_DATE_EPOCH (reproducible-builds.org):
// seconds since the Unix epoch; empty means the epoch itself.
func sourceDateEpoch(v string) (time.Time, error) {
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil || sec < 0 {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want a non-negative number of seconds", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
