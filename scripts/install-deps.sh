#!/usr/bin/env bash
# Installs the Debian packages the tests use as real clients and servers:
#   awscli            the official AWS CLI, a client credbroker did not write
#   etcd-server       etcd for the test kube-apiserver
#   kubernetes-client kubectl, a client credbroker did not write
# Only what is missing is installed; needs root (or sudo) and Debian's apt.
set -euo pipefail
want=(awscli etcd-server kubernetes-client)
missing=()
for p in "${want[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
