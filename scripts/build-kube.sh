#!/usr/bin/env bash
# Builds the kube-apiserver used by the Kubernetes provider's integration
# tests (providers/kube) and `make demo`. No download site is reachable, so it
# is built from the Go module proxy with the recipe in DESIGN.md: a throwaway
# wrapper module requires k8s.io/kubernetes at a release tag and maps each of
# its ./staging replace lines to the published k8s.io/<name> of the same
# release (v0.<minor>.<patch>). Cached by version, so only the first run on a
# machine pays (3.3 minutes on an idle 2-core machine, 7.4 with other builds
# running; about 2 GB of RAM).
#
# etcd is not built here: scripts/install-deps.sh installs Debian's
# etcd-server, which the tests find on PATH.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.34.2}
BIN_DIR=${CREDBROKER_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/credbroker/testbin}
out="$BIN_DIR/kube-apiserver-$KUBE_VERSION"

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi

# v1.34.2 -> staging modules are published as v0.34.2.
staging_version="v0.${KUBE_VERSION#v1.}"
minor=${KUBE_VERSION#v1.}
minor=${minor%%.*}

mkdir -p "$BIN_DIR"
work=$(mktemp -d "$BIN_DIR/.build-kube.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "building kube-apiserver $KUBE_VERSION from the Go module proxy (first run only, 3 to 8 minutes)..." >&2
start=$(date +%s)

# The staging list comes from the release's own go.mod, so a new release
# that adds or drops a staging module needs no edit here.
modfile=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$KUBE_VERSION" |
  sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
if [ ! -f "$modfile" ]; then
  echo "build-kube: cannot read the go.mod of k8s.io/kubernetes@$KUBE_VERSION" >&2
  exit 1
fi
staging=$(sed -n 's|^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => \./staging/.*$|\1|p' "$modfile")
if [ -z "$staging" ]; then
  echo "build-kube: no ./staging replace lines in k8s.io/kubernetes@$KUBE_VERSION's go.mod" >&2
  exit 1
fi

{
  echo "module xbuild"
  echo
  echo "go 1.24.0"
  echo
  echo "require k8s.io/kubernetes $KUBE_VERSION"
  echo
  for m in $staging; do
    echo "replace $m => $m $staging_version"
  done
} >"$work/go.mod"
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
GO

(
  cd "$work"
  # Progress: print a line every 30 s so a long, silent build does not look hung.
  ( while sleep 30; do echo "  still building kube-apiserver ($(( $(date +%s) - start )) s)..." >&2; done ) &
  ticker=$!
  trap 'kill $ticker 2>/dev/null || true' EXIT
  pkg=k8s.io/component-base/version
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean" \
    -o "$work/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
)
mv "$work/kube-apiserver" "$out"
echo "built kube-apiserver in $(( $(date +%s) - start )) s" >&2
echo "$out"
