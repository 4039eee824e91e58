#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from the Go
# modules pinned by this directory's go.mod/go.sum, and prints the directory
# that holds them (what KUBEBUILDER_ASSETS should point at).
#
# setup-envtest downloads prebuilt binaries, which these machines cannot
# reach, and `go install k8s.io/kubernetes/cmd/kube-apiserver@…` is refused
# because Kubernetes's go.mod has replace directives; building inside this
# wrapper module works. A cold build takes 5–10 minutes and ~2.5 GB of
# memory, so the result is cached per version outside the checkout (a fresh
# clone reuses it) and a second call returns at once.
#
# Usage: build.sh            build if missing, print the assets directory
#        build.sh -print     print the directory without building
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$here/go.mod" | head -n1)"
etcd_version="$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ { print $2 }' "$here/go.mod" | head -n1)"
[[ -n "$version" && -n "$etcd_version" ]] || { echo "controlplane: cannot read versions from $here/go.mod" >&2; exit 1; }

cache="${PARLEY_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/parley/controlplane}"
out="$cache/kube-apiserver-$version-etcd-$etcd_version"

if [[ "${1:-}" == "-print" ]]; then
  echo "$out"
  exit 0
fi
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi

# One build at a time (.ci/run starts one in the background, then
# `make tools` asks again): a second caller waits, then finds it built.
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]]; then
  echo "$out"
  exit 0
fi

minor="${version#v1.}"
minor="${minor%%.*}"
tmp="$(mktemp -d "$cache/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# -trimpath builds share nothing with the normal build cache, and this one
# grows to ~3 GB: keep it out of the user's GOCACHE and throw it away.
export GOCACHE="$tmp/gocache" GOFLAGS=-mod=readonly CGO_ENABLED=0
cd "$here"
echo "controlplane: building kube-apiserver $version and etcd $etcd_version into $out (5–10 min cold)" >&2
vpkg=k8s.io/component-base/version
go build -trimpath -ldflags "-s -w -X $vpkg.gitVersion=$version -X $vpkg.gitMajor=1 -X $vpkg.gitMinor=$minor" \
  -o "$tmp/bin/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
go build -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3
rm -rf "$out"
mv "$tmp/bin" "$out"
echo "$out"
