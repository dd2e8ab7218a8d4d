#!/bin/sh
# credbroker preremove (deb: prerm remove|upgrade|...; rpm: %preun with
# $1 = 0 on erase, 1 on upgrade). On removal: stop and disable the system
# units. On upgrade: nothing (postinstall restarts the daemon).
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop credbroker.service credbroker.socket >/dev/null 2>&1 || true
fi
# Works without a running systemd too (it only removes the symlinks).
if command -v systemctl >/dev/null 2>&1; then
	systemctl --no-reload disable credbroker.service credbroker.socket >/dev/null 2>&1 || true
fi
exit 0
