#!/usr/bin/env bash
# Builds the local sandbox image used by `make demo` and the sandbox tests:
# FROM scratch with Debian's static busybox (a shell and the usual tools,
# wget included) and nothing else. credbroker itself is not in the image:
# `credbroker run` bind-mounts its static binary at /credbroker. No image
# registry is involved; the image is cached by content (busybox's hash and
# this script's), so a second run only checks the label.
# Prints the image name. Needs docker and busybox-static (install-deps.sh).
set -euo pipefail

IMAGE=${CREDBROKER_SANDBOX_IMAGE:-credbroker-sandbox:dev}
BUSYBOX=${BUSYBOX:-/bin/busybox}
LABEL=io.credbroker.content

if ! [ -x "$BUSYBOX" ]; then
  echo "build-sandbox-image: no busybox at $BUSYBOX: install Debian's busybox-static (scripts/install-deps.sh)" >&2
  exit 1
fi
if ldd "$BUSYBOX" >/dev/null 2>&1; then
  echo "build-sandbox-image: $BUSYBOX is dynamically linked; install busybox-static, not busybox" >&2
  exit 1
fi

hash=$(cat "$BUSYBOX" "$0" | sha256sum | cut -c1-16)
if [ "$(docker image inspect --format "{{index .Config.Labels \"$LABEL\"}}" "$IMAGE" 2>/dev/null)" = "$hash" ]; then
  echo "$IMAGE"
  exit 0
fi

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/rootfs/bin" "$ctx/rootfs/etc" "$ctx/rootfs/tmp"
chmod 1777 "$ctx/rootfs/tmp"
cp "$BUSYBOX" "$ctx/rootfs/bin/busybox"
for applet in $("$BUSYBOX" --list); do
  [ "$applet" = busybox ] || ln -s busybox "$ctx/rootfs/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/tmp:/bin/sh\n' >"$ctx/rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$ctx/rootfs/etc/group"
cat >"$ctx/Dockerfile" <<EOF
FROM scratch
COPY rootfs/ /
ENV PATH=/bin
LABEL $LABEL=$hash
USER 65534:65534
CMD ["sh"]
EOF
echo "building sandbox image $IMAGE (FROM scratch + static busybox)..." >&2
# The legacy builder: it needs no buildx plugin, and a scratch image with
# one COPY is all it has to do.
if ! out=$(DOCKER_BUILDKIT=0 docker build --quiet --tag "$IMAGE" "$ctx" 2>&1); then
  echo "build-sandbox-image: docker build failed:" >&2
  echo "$out" >&2
  exit 1
fi
echo "$IMAGE"
