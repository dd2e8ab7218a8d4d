#!/usr/bin/env bash
# Installs the Debian packages the tests use as real clients and servers:
#   awscli            the official AWS CLI, a client credbroker did not write
#   python3-boto3     boto3, the AWS SDK for Python, for the proxy-delivery
#                     re-signing tests (when no python3 on $PATH has it)
#   etcd-server       etcd for the test kube-apiserver
#   kubernetes-client kubectl, a client credbroker did not write
#   postgresql        the server behind the fleet lease store's tests
#                     (leases/postgres/pgtest runs initdb and postgres)
#   bubblewrap        the bwrap sandbox (credbroker run --sandbox bwrap)
#   busybox-static    a static shell and tools for the FROM scratch sandbox
#                     test image (scripts/build-sandbox-image.sh)
#   systemd           systemd-socket-activate and systemd-analyze, for the
#                     socket activation test and the unit checks
#   util-linux        setpriv, to run the daemon as another uid with only
#                     the unit's capabilities
#   rpm               rpm -qpl, to check the .rpm `make package` builds
#   bash-completion   the loader the package test completes a command with
#   prometheus        a real Prometheus server and promtool, which scrape
#                     and lint the daemon's metrics (broker.metrics)
#   docker-compose    the compose tool, when a Docker Engine is installed
#                     and no compose tool is (sandbox tests run compose)
# Only what is missing is installed; needs root (or sudo) and Debian's apt.
set -euo pipefail
missing=()
# The official AWS CLI as Debian ships it (/usr/bin/aws), not a pip copy.
dpkg -s awscli >/dev/null 2>&1 || missing+=(awscli)
# boto3: Debian's python3 needs it (sandboxed agents run /usr/bin/python3);
# the awssig client tests take any python3 on $PATH that has it.
/usr/bin/python3 -c 'import boto3' >/dev/null 2>&1 || missing+=(python3-boto3)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
# Any kubectl will do (some images ship one from another package).
command -v kubectl >/dev/null 2>&1 || missing+=(kubernetes-client)
# Debian keeps initdb and postgres in /usr/lib/postgresql/<version>/bin,
# off $PATH; pgtest looks there first.
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || command -v postgres >/dev/null 2>&1 ||
  missing+=(postgresql)
dpkg -s busybox-static >/dev/null 2>&1 || missing+=(busybox-static)
# bubblewrap, for `credbroker run --sandbox bwrap` and its tests.
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
# systemd's tools, even where systemd is not PID 1 (containers).
command -v systemd-socket-activate >/dev/null 2>&1 || missing+=(systemd)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
# The package test (packaging/): rpm to read the .rpm, bash-completion to
# load the installed completion the way a shell does.
command -v rpm >/dev/null 2>&1 || missing+=(rpm)
[ -f /usr/share/bash-completion/bash_completion ] || missing+=(bash-completion)
# Prometheus and promtool, run by the metrics tests (never as a service).
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } || missing+=(prometheus)
if command -v docker >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1 &&
  ! docker compose version >/dev/null 2>&1; then
  missing+=(docker-compose)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing Debian packages: ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
$SUDO apt-get update -qq >/dev/null
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
