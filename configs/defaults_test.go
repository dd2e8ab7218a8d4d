package configs

import (
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestDefaultRuntimeDir(t *testing.T) {
	tests := []struct {
		name, xdg string
		euid      int
		want      string
	}{
		{"XDG_RUNTIME_DIR", "/run/user/1000", 1000, "/run/user/1000/credbroker"},
		{"root", "", 0, "/run/credbroker"},
		{"user without XDG_RUNTIME_DIR", "", 1000, "/dev/shm/credbroker-1000"},
		{"relative XDG_RUNTIME_DIR is ignored", "run", 1000, "/dev/shm/credbroker-1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", tt.xdg)
			old := geteuid
			geteuid = func() int { return tt.euid }
			t.Cleanup(func() { geteuid = old })

			var c Config
			c.ApplyDefaults()
			if c.Broker.RuntimeDir != tt.want {
				t.Errorf("runtime_dir = %q, want %q", c.Broker.RuntimeDir, tt.want)
			}
			sock := filepath.Join(tt.want, "broker.sock")
			if c.Broker.Socket != sock || DefaultSocketPath() != sock {
				t.Errorf("socket = %q, DefaultSocketPath() = %q, want %q", c.Broker.Socket, DefaultSocketPath(), sock)
			}
		})
	}
}

func TestDefaultStateDir(t *testing.T) {
	tests := []struct {
		name, xdg, home, want string
	}{
		{"XDG_STATE_HOME", "/xdg/state", "/home/u", "/xdg/state/credbroker"},
		{"HOME", "", "/home/u", "/home/u/.local/state/credbroker"},
		{"relative XDG_STATE_HOME is ignored", "state", "/home/u", "/home/u/.local/state/credbroker"},
		{"neither", "", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("XDG_STATE_HOME", tt.xdg)
			t.Setenv("HOME", tt.home)
			var c Config
			c.ApplyDefaults()
			b, s := c.Broker, c.Store
			if b.StateDir != tt.want {
				t.Errorf("state_dir = %q, want %q", b.StateDir, tt.want)
			}
			wantAudit, wantDB := "", ""
			if tt.want != "" {
				wantAudit, wantDB = tt.want+"/audit.log", tt.want+"/leases.db"
			}
			if b.AuditLog != wantAudit || s.Path != wantDB {
				t.Errorf("audit_log = %q, store.path = %q; want %q, %q", b.AuditLog, s.Path, wantAudit, wantDB)
			}
		})
	}
}

func TestApplyDefaultsKeepsSetValues(t *testing.T) {
	isolateEnv(t)
	t.Setenv("VAULT_ADDR", "http://from-env:8200")
	c := Config{
		Broker: Broker{RuntimeDir: "/r", StateDir: "/s", RefreshInterval: Duration(time.Second)},
		Store:  Store{Driver: "postgres", Path: "/db"},
		Providers: Providers{Vault: &VaultProvider{
			Address: "http://set:8200", TokenRole: "tr", EpochTTL: Duration(time.Hour),
			Auth: VaultAuth{TokenFile: "/t"},
		}},
	}
	c.ApplyDefaults()
	want := Config{
		Broker: Broker{Socket: "/r/broker.sock", RuntimeDir: "/r", StateDir: "/s", AuditLog: "/s/audit.log", RefreshInterval: Duration(time.Second)},
		Store:  Store{Driver: "postgres", Path: "/db"},
		Providers: Providers{Vault: &VaultProvider{
			Address: "http://set:8200", TokenRole: "tr", EpochTTL: Duration(time.Hour),
			Auth: VaultAuth{TokenFile: "/t"},
		}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
	c.ApplyDefaults()
	if !reflect.DeepEqual(c, want) {
		t.Errorf("second ApplyDefaults changed the config: %+v", c)
	}
}

func TestApplyDefaultsBrokerAndVault(t *testing.T) {
	isolateEnv(t)
	t.Setenv("VAULT_ADDR", "http://from-env:8200")
	c := Config{Providers: Providers{Vault: &VaultProvider{}}}
	c.ApplyDefaults()
	if c.Broker.RefreshInterval.D() != 5*time.Second || c.Store.Driver != "sqlite" {
		t.Errorf("refresh_interval = %v, driver = %q", c.Broker.RefreshInterval, c.Store.Driver)
	}
	want := VaultProvider{
		Address: "http://from-env:8200", TokenRole: "credbroker-session",
		EpochTTL: Duration(24 * time.Hour), Auth: VaultAuth{TokenEnv: "VAULT_TOKEN"},
	}
	if !reflect.DeepEqual(*c.Providers.Vault, want) {
		t.Errorf("vault = %+v, want %+v", *c.Providers.Vault, want)
	}

	c = Config{Providers: Providers{Vault: &VaultProvider{Auth: VaultAuth{AppRole: &AppRole{RoleID: "id"}}}}}
	c.ApplyDefaults()
	a := c.Providers.Vault.Auth
	if a.TokenEnv != "" || a.AppRole.Mount != "approle" {
		t.Errorf("approle auth = %+v, mount %q; want no token_env and mount approle", a, a.AppRole.Mount)
	}
}

func TestApplyDefaultsRoles(t *testing.T) {
	const m = time.Minute
	tests := []struct {
		name            string
		ttl, maxTTL     time.Duration
		wantTTL, wantMx time.Duration
	}{
		{"both unset", 0, 0, 15 * m, 60 * m},
		{"long ttl raises max_ttl", 120 * m, 0, 120 * m, 120 * m},
		{"short ttl keeps 1h max_ttl", 5 * m, 0, 5 * m, 60 * m},
		{"max_ttl set", 0, 30 * m, 15 * m, 30 * m},
		{"short max_ttl lowers ttl", 0, 10 * m, 10 * m, 10 * m},
		{"both set", 10 * m, 20 * m, 10 * m, 20 * m},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			c := Config{Roles: map[string]Role{"r": {
				TTL: Duration(tt.ttl), MaxTTL: Duration(tt.maxTTL),
				Vault: &VaultRole{Secrets: []VaultSecret{{Name: "a"}, {Name: "b", Method: "write"}}},
			}}}
			c.ApplyDefaults()
			r := c.Roles["r"]
			if r.Name != "r" || r.TTL.D() != tt.wantTTL || r.MaxTTL.D() != tt.wantMx {
				t.Errorf("role = %q ttl %v max_ttl %v; want r %v %v", r.Name, r.TTL, r.MaxTTL, tt.wantTTL, tt.wantMx)
			}
			if r.Vault.Secrets[0].Method != "read" || r.Vault.Secrets[1].Method != "write" {
				t.Errorf("methods = %q, %q; want read, write", r.Vault.Secrets[0].Method, r.Vault.Secrets[1].Method)
			}
		})
	}
}
