package configs

import (
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// Defaults that do not depend on the environment.
const (
	DefaultRefreshInterval = 5 * time.Second
	DefaultStoreDriver     = "sqlite"
	DefaultTokenEnv        = "VAULT_TOKEN"
	DefaultTokenRole       = "credbroker-session"
	DefaultEpochTTL        = 24 * time.Hour
	DefaultAppRoleMount    = "approle"
	DefaultTTL             = 15 * time.Minute
	DefaultMaxTTL          = time.Hour
	DefaultSecretMethod    = "read"
)

// geteuid is os.Geteuid, replaced in tests to reach the non-root branch.
var geteuid = os.Geteuid

// ApplyDefaults fills every unset field with its default, reading the
// environment now (XDG_RUNTIME_DIR, XDG_STATE_HOME, HOME, VAULT_ADDR). It
// also sets each Role's Name from its key. It never overwrites a value that
// is set, so it is safe to call twice.
func (c *Config) ApplyDefaults() {
	c.Broker.applyDefaults()
	if c.Store.Driver == "" {
		c.Store.Driver = DefaultStoreDriver
	}
	if c.Store.Path == "" && c.Store.Driver == DefaultStoreDriver && c.Broker.StateDir != "" {
		c.Store.Path = filepath.Join(c.Broker.StateDir, "leases.db")
	}
	if v := c.Providers.Vault; v != nil {
		v.applyDefaults()
	}
	if a := c.Providers.AWS; a != nil {
		a.applyDefaults()
		if a.WebIdentity != nil {
			a.WebIdentity.applyDefaults(c.Broker.StateDir)
		}
	}
	if k := c.Providers.Kube; k != nil {
		k.applyDefaults()
	}
	for name, r := range c.Roles {
		r.applyDefaults(name)
		c.Roles[name] = r
	}
}

func (b *Broker) applyDefaults() {
	if b.RuntimeDir == "" {
		b.RuntimeDir = defaultRuntimeDir()
	}
	if b.Socket == "" {
		b.Socket = filepath.Join(b.RuntimeDir, "broker.sock")
	}
	if b.StateDir == "" {
		b.StateDir = defaultStateDir()
	}
	if b.AuditLog == "" && b.StateDir != "" {
		b.AuditLog = filepath.Join(b.StateDir, "audit.log")
	}
	if b.RefreshInterval == 0 {
		b.RefreshInterval = Duration(DefaultRefreshInterval)
	}
}

func (v *VaultProvider) applyDefaults() {
	if v.Address == "" {
		v.Address = os.Getenv("VAULT_ADDR")
	}
	a := &v.Auth
	if a.TokenEnv == "" && a.TokenFile == "" && a.AppRole == nil {
		a.TokenEnv = DefaultTokenEnv
	}
	if a.AppRole != nil && a.AppRole.Mount == "" {
		a.AppRole.Mount = DefaultAppRoleMount
	}
	if v.TokenRole == "" {
		v.TokenRole = DefaultTokenRole
	}
	if v.EpochTTL == 0 {
		v.EpochTTL = Duration(DefaultEpochTTL)
	}
}

func (r *Role) applyDefaults(name string) {
	r.Name = name
	// Each of ttl and max_ttl defaults so as not to conflict with the other
	// when only one is set: a short max_ttl lowers the default ttl, a long
	// ttl raises the default max_ttl.
	if r.TTL == 0 {
		r.TTL = Duration(DefaultTTL)
		if r.MaxTTL > 0 {
			r.TTL = min(r.TTL, r.MaxTTL)
		}
	}
	if r.MaxTTL == 0 {
		r.MaxTTL = max(Duration(DefaultMaxTTL), r.TTL)
	}
	if r.AWS != nil {
		r.AWS.applyDefaults()
	}
	if r.Kube != nil {
		r.Kube.applyDefaults()
	}
	if r.Vault != nil {
		for i := range r.Vault.Secrets {
			if r.Vault.Secrets[i].Method == "" {
				r.Vault.Secrets[i].Method = DefaultSecretMethod
			}
		}
	}
}

// DefaultSocketPath is the socket the daemon listens on when the config
// sets neither broker.socket nor broker.runtime_dir; the CLI dials it when
// no config can be loaded.
func DefaultSocketPath() string {
	return filepath.Join(defaultRuntimeDir(), "broker.sock")
}

// defaultRuntimeDir is $XDG_RUNTIME_DIR/credbroker (tmpfs on systemd
// machines), /run/credbroker for root, else /dev/shm/credbroker-<uid>: all
// three are memory-backed, so credentials never reach a disk.
func defaultRuntimeDir() string {
	if d := absEnv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "credbroker")
	}
	if geteuid() == 0 {
		return "/run/credbroker"
	}
	return "/dev/shm/credbroker-" + strconv.Itoa(geteuid())
}

// defaultStateDir is $XDG_STATE_HOME/credbroker, XDG_STATE_HOME defaulting
// to ~/.local/state; "" when neither it nor the home directory is known.
func defaultStateDir() string {
	if d := absEnv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "credbroker")
	}
	home, err := os.UserHomeDir()
	if err != nil || !filepath.IsAbs(home) {
		return ""
	}
	return filepath.Join(home, ".local", "state", "credbroker")
}

// absEnv returns the environment variable key when it holds an absolute
// path; the XDG base directory spec says to ignore relative ones.
func absEnv(key string) string {
	if d := os.Getenv(key); filepath.IsAbs(d) {
		return d
	}
	return ""
}
