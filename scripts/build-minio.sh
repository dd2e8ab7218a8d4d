#!/usr/bin/env bash
# Builds the MinIO server used as the S3/STS test server (its STS AssumeRole
# answers aws-sdk-go-v2, enforces session policies and revokes tokens through
# its admin API). No download site is reachable, so it is built from the Go
# module proxy and cached by version (about 2.5 minutes on first run).
set -euo pipefail

MINIO_VERSION=${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}
BIN_DIR=${CREDBROKER_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/credbroker/testbin}
out="$BIN_DIR/minio-$MINIO_VERSION"

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$BIN_DIR"
work=$(mktemp -d "$BIN_DIR/.build-minio.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building minio $MINIO_VERSION from the Go module proxy (first run only, about 3 minutes)..." >&2
start=$(date +%s)
( while sleep 30; do echo "  still building minio ($(( $(date +%s) - start )) s)..." >&2; done ) &
ticker=$!
trap 'kill $ticker 2>/dev/null || true; rm -rf "$work"' EXIT
GOBIN="$work" CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath -ldflags "-s -w" "github.com/minio/minio@$MINIO_VERSION"
mv "$work/minio" "$out"
echo "built minio in $(( $(date +%s) - start )) s" >&2
echo "$out"
