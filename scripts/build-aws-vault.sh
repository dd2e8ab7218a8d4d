#!/usr/bin/env bash
# Builds aws-vault, the baseline of the AWS session-start benchmark
# (docs/performance.md), from the Go module proxy and caches it by version
# next to the test servers. Its go.mod has no replace directives, but
# `go install module@version` asks the proxy for the module's version list
# (refused here), so it is built from a throwaway wrapper module that
# requires the exact version. CGO_ENABLED=0 is fine on Linux (the keyring
# backends there are pure Go; the benchmark uses the `file` backend).
set -euo pipefail

AWS_VAULT_VERSION=${AWS_VAULT_VERSION:-v7.2.0}
BIN_DIR=${CREDBROKER_TESTBIN:-${XDG_CACHE_HOME:-$HOME/.cache}/credbroker/testbin}
out="$BIN_DIR/aws-vault-$AWS_VAULT_VERSION"

if [ -x "$out" ]; then
  echo "$out"
  exit 0
fi
mkdir -p "$BIN_DIR"
work=$(mktemp -d "$BIN_DIR/.build-aws-vault.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "building aws-vault $AWS_VAULT_VERSION from the Go module proxy (first run only)..." >&2
start=$(date +%s)
cat >"$work/go.mod" <<MOD
module xbuild

go 1.20

require github.com/99designs/aws-vault/v7 $AWS_VAULT_VERSION
MOD
cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import _ "github.com/99designs/aws-vault/v7"
GO
(
  cd "$work"
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath \
    -ldflags "-s -w -X main.Version=$AWS_VAULT_VERSION" \
    -o "$work/aws-vault" github.com/99designs/aws-vault/v7
)
mv "$work/aws-vault" "$out"
echo "built aws-vault in $(( $(date +%s) - start )) s" >&2
echo "$out"
