#!/usr/bin/env bash
# Builds toxiproxy-server, the fault-injecting TCP proxy the fault tests put
# between the broker and each server (latency, black holes, resets, a server
# down). No download site is reachable, so it is built from the Go module
# proxy and cached by version (a few seconds on first run).
set -euo pipefail

TOXIPROXY_VERSION=${TOXIPROXY_VERSION:-v2.12.0}
BIN_DIR=${CREDBROKER_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/credbroker/testbin}
out="$BIN_DIR/toxiproxy-server-$TOXIPROXY_VERSION"

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$BIN_DIR"
work=$(mktemp -d "$BIN_DIR/.build-toxiproxy.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building toxiproxy-server $TOXIPROXY_VERSION from the Go module proxy (first run only)..." >&2
start=$(date +%s)
GOBIN="$work" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
mv "$work/server" "$out"
echo "built toxiproxy-server in $(( $(date +%s) - start )) s" >&2
echo "$out"
