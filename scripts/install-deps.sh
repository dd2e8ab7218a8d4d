#!/usr/bin/env bash
# Installs the Debian packages the tests use as real clients and servers:
#   awscli            the official AWS CLI, a client credbroker did not write
#   etcd-server       etcd for the test kube-apiserver
#   kubernetes-client kubectl, a client credbroker did not write
# Only what is missing is installed; needs root (or sudo) and Debian's apt.
set -euo pipefail
missing=()
# The official AWS CLI as Debian ships it (/usr/bin/aws), not a pip copy.
dpkg -s awscli >/dev/null 2>&1 || missing+=(awscli)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# Any kubectl will do (some images ship one from another package).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
