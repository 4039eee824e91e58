package imagebuild

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Annotations on the image's entry in an OCI layout's index.json.
const (
	// AnnotationRefName is the OCI name podman load and skopeo copy
	// oci-archive:FILE:NAME look an image up by.
	AnnotationRefName = "org.opencontainers.image.ref.name"
	// AnnotationContainerdName is the full, normalised name ctr import
	// gives the image ("docker.io/parley/parleyd:dev", the name the
	// kubelet asks for). containerd reads ref.name as the OCI spec means
	// it, a tag only, so ref.name alone does not name the image there.
	AnnotationContainerdName = "io.containerd.image.name"
)

// ociLayout is the oci-layout file of an image layout.
const ociLayout = `{"imageLayoutVersion":"1.0.0"}`

// WriteOCIArchive writes img to w as an OCI image layout in a tar (the
// "oci-archive" that podman load, skopeo copy oci-archive: and ctr import
// read), named tag. Members are in path order and have the image's
// creation time as mtime, so the bytes depend on img and tag only.
func WriteOCIArchive(w io.Writer, img v1.Image, tag name.Tag) error {
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	// The index is written by hand: mutate.AppendManifests would give the
	// image an artifactType, which only artifacts, not images, carry.
	desc, err := partial.Descriptor(img)
	if err != nil {
		return err
	}
	index, err := json.Marshal(v1.IndexManifest{
		SchemaVersion: 2,
		MediaType:     types.OCIImageIndex,
		Manifests: []v1.Descriptor{{
			MediaType: desc.MediaType,
			Size:      desc.Size,
			Digest:    desc.Digest,
			Platform:  &v1.Platform{OS: cf.OS, Architecture: cf.Architecture},
			Annotations: map[string]string{
				AnnotationRefName:        refName(tag),
				AnnotationContainerdName: containerdName(tag),
			},
		}},
	})
	if err != nil {
		return err
	}
	blobs, err := imageBlobs(img)
	if err != nil {
		return err
	}

	a := &archive{tw: tar.NewWriter(w), hdr: tar.Header{ModTime: cf.Created.UTC(), Mode: 0o644}}
	a.dir("blobs/")
	a.dir("blobs/sha256/")
	for _, b := range blobs {
		a.file("blobs/sha256/"+b.digest.Hex, b.size, b.open)
	}
	a.file("index.json", int64(len(index)), bytesOpener(index))
	a.file("oci-layout", int64(len(ociLayout)), bytesOpener([]byte(ociLayout)))
	if a.err != nil {
		return a.err
	}
	return a.tw.Close()
}

// WriteDockerArchive writes img to w in the format docker save writes and
// docker load reads, named tag.
func WriteDockerArchive(w io.Writer, img v1.Image, tag name.Tag) error {
	return tarball.Write(tag, img, w)
}

// blob is one content-addressed file of an image layout.
type blob struct {
	digest v1.Hash
	size   int64
	open   func() (io.ReadCloser, error)
}

// imageBlobs returns the manifest, the config and the compressed layers of
// img, sorted by digest.
func imageBlobs(img v1.Image) ([]blob, error) {
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, err
	}
	config, err := img.RawConfigFile()
	if err != nil {
		return nil, err
	}
	var blobs []blob
	for _, b := range [][]byte{manifest, config} {
		digest, size, err := v1.SHA256(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		blobs = append(blobs, blob{digest: digest, size: size, open: bytesOpener(b)})
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	for _, l := range layers {
		digest, err := l.Digest()
		if err != nil {
			return nil, err
		}
		size, err := l.Size()
		if err != nil {
			return nil, err
		}
		blobs = append(blobs, blob{digest: digest, size: size, open: l.Compressed})
	}
	slices.SortFunc(blobs, func(a, b blob) int { return strings.Compare(a.digest.Hex, b.digest.Hex) })
	// An image whose layers repeat, or whose config equals a layer,
	// stores each blob once.
	return slices.CompactFunc(blobs, func(a, b blob) bool { return a.digest == b.digest }), nil
}

// archive writes tar members with a common header, keeping the first error.
type archive struct {
	tw  *tar.Writer
	hdr tar.Header
	err error
}

func (a *archive) dir(name string) {
	if a.err != nil {
		return
	}
	hdr := a.hdr
	hdr.Name, hdr.Typeflag, hdr.Mode = name, tar.TypeDir, 0o755
	a.err = a.tw.WriteHeader(&hdr)
}

func (a *archive) file(name string, size int64, open func() (io.ReadCloser, error)) {
	if a.err != nil {
		return
	}
	hdr := a.hdr
	hdr.Name, hdr.Typeflag, hdr.Size = name, tar.TypeReg, size
	if a.err = a.tw.WriteHeader(&hdr); a.err != nil {
		return
	}
	rc, err := open()
	if err != nil {
		a.err = err
		return
	}
	defer rc.Close()
	if _, err := io.Copy(a.tw, rc); err != nil {
		a.err = fmt.Errorf("%s: %w", name, err)
	}
}

// refName is tag as given, with ":latest" added when it names no tag.
func refName(tag name.Tag) string {
	if s := tag.String(); strings.HasSuffix(s, ":"+tag.TagStr()) {
		return s
	}
	return tag.String() + ":" + tag.TagStr()
}

// containerdName is tag as containerd normalises it: Docker Hub as
// docker.io, official images under library/.
func containerdName(tag name.Tag) string {
	registry := tag.Context().RegistryStr()
	if registry == name.DefaultRegistry {
		registry = "docker.io"
	}
	return registry + "/" + tag.Context().RepositoryStr() + ":" + tag.TagStr()
}

func bytesOpener(b []byte) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
}
