package configs

import (
	"errors"
	"fmt"
	"os/user"
	"strconv"
	"strings"
)

// Restricted reports whether the role names who may start it
// (allowed_uids or allowed_groups); an unrestricted role is open to every
// caller the daemon's socket admits.
func (r Role) Restricted() bool { return len(r.AllowedUIDs) > 0 || len(r.AllowedGroups) > 0 }

// LookupGroup resolves an allowed_groups entry to a gid: a number is taken
// as is, a name is looked up on this host (os/user: /etc/group, or NSS
// when built with cgo).
func LookupGroup(s string) (int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty group")
	}
	if gid, err := strconv.Atoi(s); err == nil {
		if gid < 0 {
			return 0, fmt.Errorf("gid %d is negative", gid)
		}
		return gid, nil
	}
	g, err := user.LookupGroup(s)
	var unknown user.UnknownGroupError
	if errors.As(err, &unknown) {
		return 0, fmt.Errorf("no group %q on this host", s)
	}
	if err != nil {
		return 0, fmt.Errorf("look up group %q: %w", s, err)
	}
	return strconv.Atoi(g.Gid)
}

// validateAccess checks a role's allowed_uids and allowed_groups. Group
// names are resolved here, so a typo fails at load rather than locking
// everyone out of the role at the first start.
func (r *Role) validateAccess(ps *problems, p fieldPath) {
	for i, uid := range r.AllowedUIDs {
		if uid < 0 {
			ps.add(p.with("allowed_uids").index(i), "use a user id from id -u (0 or more)", "uid %d is negative", uid)
		}
	}
	for i, g := range r.AllowedGroups {
		if _, err := LookupGroup(g); err != nil {
			ps.add(p.with("allowed_groups").index(i),
				"use a group name that exists on this host (getent group NAME) or a gid (0 or more)",
				"%v", err)
		}
	}
}
