#!/bin/sh
# credbroker postremove (deb: postrm remove|purge|upgrade|...; rpm:
# %postun with $1 = 0 on erase, 1 on upgrade).
#
# remove (and rpm erase) keeps the config, the state dir and the user.
# purge (deb) also deletes /etc/credbroker (the config postinstall wrote
# and credbroker.env, which holds a token), /var/lib/credbroker (lease store,
# audit log) and /run/credbroker (session dirs left by a stopped daemon).
# The credbroker user and group stay, as Debian does for system users:
# files elsewhere may still be owned by the uid (userdel credbroker if not).
set -e

case "$1" in
remove | purge | 0)
	if [ -d /run/systemd/system ]; then
		systemctl daemon-reload >/dev/null 2>&1 || true
	fi
	;;
esac

if [ "$1" = purge ]; then
	rm -f /etc/credbroker/config.yaml /etc/credbroker/credbroker.env
	rmdir --ignore-fail-on-non-empty /etc/credbroker 2>/dev/null || true
	rm -rf /var/lib/credbroker /run/credbroker
fi
exit 0
