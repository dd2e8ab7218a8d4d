package configs

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"
)

// MaxRoleTTL caps every role's max_ttl: a credential the broker hands out
// must expire on its own within a working day.
const MaxRoleTTL = 12 * time.Hour

// MinSessionTTL is the shortest session the broker starts: a role's ttl
// and max_ttl, and a --ttl, must be at least this.
const MinSessionTTL = 30 * time.Second

// MaxRefreshInterval caps broker.refresh_interval: the reaper ends expired
// sessions only once a tick, so a longer interval would keep a session's
// credentials past its end by up to that much.
const MaxRefreshInterval = MinSessionTTL

// EpochMargin is how much longer than a session the Vault epoch token must
// still live when the session starts (else a new epoch is created): a
// child token is revoked when its parent expires.
const EpochMargin = 5 * time.Minute

// Validate checks the config after ApplyDefaults. It returns every problem
// at once, joined with errors.Join; each is a *FieldError naming the field
// and the fix but no line (Load adds the file and line).
func (c *Config) Validate() error {
	ps := c.problems()
	errs := make([]error, len(ps))
	for i, p := range ps {
		errs[i] = p
	}
	return errors.Join(errs...)
}

// problems runs every check, in schema order.
func (c *Config) problems() problems {
	var ps problems
	c.Broker.validate(&ps)
	c.Store.validate(&ps)
	if v := c.Providers.Vault; v != nil {
		v.validate(&ps, fieldPath{"providers", "vault"})
	}
	if a := c.Providers.AWS; a != nil {
		a.validate(&ps, fieldPath{"providers", "aws"})
	}
	if k := c.Providers.Kube; k != nil {
		k.validate(&ps, fieldPath{"providers", "kube"})
	}
	c.Broker.Egress.validate(&ps, fieldPath{"broker", "egress"})
	c.Broker.Metrics.validate(&ps, fieldPath{"broker", "metrics"})
	c.validateRoles(&ps)
	if v := c.Providers.Vault; v != nil {
		c.validateEpoch(&ps, v)
	}
	return ps
}

func (b *Broker) validate(ps *problems) {
	p := fieldPath{"broker"}
	absPath(ps, p.with("socket"), b.Socket)
	absPath(ps, p.with("runtime_dir"), b.RuntimeDir)
	if b.StateDir == "" {
		ps.add(p.with("state_dir"), "set broker.state_dir, or set $XDG_STATE_HOME or $HOME",
			"no default: neither $XDG_STATE_HOME nor $HOME is set")
	}
	absPath(ps, p.with("state_dir"), b.StateDir)
	absPath(ps, p.with("audit_log"), b.AuditLog)
	for i, uid := range b.AllowedUIDs {
		if uid < 0 {
			ps.add(p.with("allowed_uids").index(i), "use a user id from id -u (0 or more)",
				"uid %d is negative", uid)
		}
	}
	if b.DaemonUID != nil && *b.DaemonUID < 0 {
		ps.add(p.with("daemon_uid"), "use the daemon user's id from id -u (0 or more)",
			"uid %d is negative", *b.DaemonUID)
	}
	for i, uid := range b.AdminUIDs {
		if uid < 0 {
			ps.add(p.with("admin_uids").index(i), "use a user id from id -u (0 or more)",
				"uid %d is negative", uid)
		}
	}
	switch {
	case b.RefreshInterval <= 0:
		ps.add(p.with("refresh_interval"), "use a positive duration such as 5s",
			"%s is not positive", b.RefreshInterval)
	case b.RefreshInterval > Duration(MaxRefreshInterval):
		ps.add(p.with("refresh_interval"), fmt.Sprintf("use %s or less, such as 5s (the default)", Duration(MaxRefreshInterval)),
			"%s is too long: the reaper ends expired sessions once a tick, so their credentials would outlive them by up to that much",
			b.RefreshInterval)
	}
	if b.HostID != "" && !validHostID(b.HostID) {
		ps.add(p.with("host_id"), "use up to 63 letters, digits, '.', '-' and '_', such as the host name",
			"%q is not a valid host id", b.HostID)
	}
}

func (s *Store) validate(ps *problems) {
	p := fieldPath{"store"}
	switch s.Driver {
	case "sqlite":
		absPath(ps, p.with("path"), s.Path)
		if s.DSNEnv != "" {
			ps.add(p.with("dsn_env"), "remove it, or set driver: postgres", "only used by driver postgres")
		}
		if s.DSNFile != "" {
			ps.add(p.with("dsn_file"), "remove it, or set driver: postgres", "only used by driver postgres")
		}
	case "postgres":
		s.validatePostgres(ps, p)
	case "postgresql":
		ps.add(p.with("driver"), "write driver: postgres", "unknown driver %q", s.Driver)
	default:
		ps.add(p.with("driver"), "use sqlite (one host) or postgres (a fleet)", "unknown driver %q", s.Driver)
	}
}

// validatePostgres requires exactly one DSN source; the DSN itself never
// sits in the file, as it usually holds a password.
func (s *Store) validatePostgres(ps *problems, p fieldPath) {
	if s.Path != "" {
		ps.add(p.with("path"), "remove it: the DSN names the database", "only used by driver sqlite")
	}
	switch {
	case s.DSNEnv == "" && s.DSNFile == "":
		ps.add(p, "set dsn_env to an environment variable, or dsn_file to a file, holding the DSN",
			"driver postgres needs a DSN")
	case s.DSNEnv != "" && s.DSNFile != "":
		ps.add(p.with("dsn_file"), "keep only one of dsn_env and dsn_file", "both dsn_env and dsn_file are set")
	}
	if s.DSNEnv != "" {
		envVar(ps, p.with("dsn_env"), s.DSNEnv)
	}
	absPath(ps, p.with("dsn_file"), s.DSNFile)
}

// absPath requires a set path to be absolute: the daemon's working directory
// (often / under systemd) must not change what a path means.
func absPath(ps *problems, p fieldPath, v string) {
	if v != "" && !filepath.IsAbs(v) {
		ps.add(p, "use an absolute path (starting with /)", "%q is not an absolute path", v)
	}
}
