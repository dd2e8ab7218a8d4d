#!/bin/sh
# credbroker postinstall (deb: postinst configure [OLD-VERSION]; rpm: %post
# with $1 = 1 on install, 2 on upgrade). Every step is idempotent.
set -e

CONF_DIR=/etc/credbroker
CONF=$CONF_DIR/config.yaml
TEMPLATE=/usr/share/credbroker/config.yaml

# deb: abort-* and the like need nothing redone.
case "$1" in
configure | 1 | 2 | "") ;;
*) exit 0 ;;
esac

# The credbroker user and group, as the sysusers file says; useradd where
# systemd-sysusers is missing. Kept on removal (see postremove).
if ! getent passwd credbroker >/dev/null; then
	if command -v systemd-sysusers >/dev/null 2>&1; then
		systemd-sysusers /usr/lib/sysusers.d/credbroker.conf
	else
		useradd --system --user-group --no-create-home \
			--home-dir /var/lib/credbroker --shell /usr/sbin/nologin \
			--comment "credbroker daemon" credbroker
	fi
fi

# The state dir (lease store, audit log); systemd's StateDirectory= would
# create it too, this makes it exist before the first start.
install -d -m 0700 -o credbroker -g credbroker /var/lib/credbroker

# The config, on first install only: the template with the credbroker
# user's uid as broker.daemon_uid. An existing config (an upgrade, or one
# the operator wrote first) is left alone.
install -d -m 0755 "$CONF_DIR"
if [ ! -e "$CONF" ]; then
	uid=$(id -u credbroker)
	tmp=$(mktemp "$CONF_DIR/.config.yaml.XXXXXX")
	sed "s/^  daemon_uid: [0-9]*\$/  daemon_uid: $uid/" "$TEMPLATE" >"$tmp"
	chown root:credbroker "$tmp"
	chmod 0640 "$tmp"
	mv "$tmp" "$CONF"
fi

# systemd: see the new units; on an upgrade restart a running daemon
# (live sessions stay recorded and carry on). Nothing is enabled or
# started on install: the config needs the Vault address and token first.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ -n "$2" ] || [ "$1" = 2 ]; then
		systemctl try-restart credbroker.service >/dev/null 2>&1 || true
	fi
fi
exit 0
