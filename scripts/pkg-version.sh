#!/usr/bin/env bash
# Prints the .deb/.rpm version of this checkout, which must start with a
# digit and sort upward commit by commit (dpkg and rpm both):
#   at tag v1.2.3            1.2.3
#   4 commits after v1.2.3   1.2.3+git4.<sha>
#   no v* tag yet            0.0.0+git<commits>.<sha>
# and ".dirty" appended when the work tree has changes.
set -euo pipefail
cd "$(dirname "$0")/.."
if d=$(git describe --tags --long --match 'v[0-9]*' 2>/dev/null); then
  # v1.2.3-4-gabc1234
  sha=${d##*-g}
  rest=${d%-g*}
  n=${rest##*-}
  tag=${rest%-*}
  v=${tag#v}
  [ "$n" = 0 ] || v="$v+git$n.$sha"
else
  v="0.0.0+git$(git rev-list --count HEAD).$(git rev-parse --short HEAD)"
fi
[ -z "$(git status --porcelain --untracked-files=no)" ] || v="$v.dirty"
echo "$v"
