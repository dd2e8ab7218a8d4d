package broker

import (
	"fmt"
	"slices"

	"github.com/credbroker/credbroker/configs"
)

// Audit events of access control.
const (
	// EvAPIRefused: a caller the socket does not admit (broker.allowed_uids).
	EvAPIRefused = "api.refused"
	// EvAccessRefused: an admitted caller asked for something it may not
	// do (clear an incident, end or hold another user's session).
	EvAccessRefused = "access.refused"
	// EvGuardHitRefused: a guard hit whose fingerprint is not one of the
	// named session's secrets; the session is left alone.
	EvGuardHitRefused = "guard.hit_refused"
)

// isAdmin reports whether uid is an admin: root and the daemon's own uid
// (which hold the broker's keys and state anyway) and broker.admin_uids.
func (b *Broker) isAdmin(uid int) bool { return b.isAdminIn(b.config(), uid) }

// isAdminIn is isAdmin with broker.admin_uids read from cfg.
func (b *Broker) isAdminIn(cfg *configs.Config, uid int) bool {
	return uid == 0 || b.isDaemonUID(uid) || slices.Contains(cfg.Broker.AdminUIDs, uid)
}

// adminsText names who the admins are, for refusal messages.
func (b *Broker) adminsText() string {
	return fmt.Sprintf("root, the daemon's uid %d and broker.admin_uids %v", daemonUID, b.config().Broker.AdminUIDs)
}

// refuse audits a refusal (who, what, why; never a secret) and returns err.
func (b *Broker) refuse(ev Event, c Caller, err error) error {
	ev.CallerUID, ev.CallerPID, ev.Reason = uidPtr(c.UID), c.PID, err.Error()
	b.record(ev)
	b.log.Warn("refused", "event", ev.Event, "session", ev.Session, "caller_uid", c.UID, "caller_pid", c.PID, "reason", err.Error())
	return err
}

// mayStart checks that c may start a session of role: every caller for a
// role without allowed_uids and allowed_groups, else a listed uid, a member
// of a listed group, or an admin. The caller's groups are those the kernel
// gave its connection (see peerCred). Admins are those of cfg, the config
// the start reads.
func (b *Broker) mayStart(cfg *configs.Config, c Caller, role configs.Role) error {
	if !role.Restricted() || b.isAdminIn(cfg, c.UID) || slices.Contains(role.AllowedUIDs, c.UID) {
		return nil
	}
	for _, g := range role.AllowedGroups {
		gid, err := configs.LookupGroup(g)
		if err != nil {
			b.log.Error("role allowed_groups entry no longer resolves", "role", role.Name, "group", g, "err", err)
			continue
		}
		if slices.Contains(c.GIDs, gid) {
			return nil
		}
	}
	return fmt.Errorf("%w: uid %d may not start a session of role %s: add the uid to roles.%s.allowed_uids, or one of its groups to roles.%s.allowed_groups",
		ErrForbidden, c.UID, role.Name, role.Name, role.Name)
}
