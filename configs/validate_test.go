package configs

import (
	"strings"
	"testing"
	"time"
)

// Building blocks for the cases; each case marks the line its error must
// point at with #<.
const (
	vaultProv = "providers:\n  vault:\n    address: http://127.0.0.1:8200\n"
	roleR     = "roles:\n  r:\n    vault:\n      policies: [p]\n"
)

func TestValidateRules(t *testing.T) {
	tests := []struct {
		name, yaml, path, msg, hint string
	}{
		{"no roles", vaultProv + "roles: {} " + marker + "\n",
			"roles", "no roles are defined", "add a role"},
		{"roles left out", "providers: " + marker + "\n  vault:\n    address: http://127.0.0.1:8200\n",
			"roles", "no roles are defined", "add a role"},
		{"role name", vaultProv + "roles:\n  Agent_1: " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.Agent_1", `"Agent_1" is not a valid role name`, "lower-case letters"},
		{"role name too long", vaultProv + "roles:\n  " + strings.Repeat("a", 64) + ": " + marker + "\n    vault:\n      policies: [p]\n",
			"roles." + strings.Repeat("a", 64), "is not a valid role name", "use 1-63"},
		{"ttl not positive", vaultProv + "roles:\n  r:\n    ttl: -5m " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.ttl", "-5m is not positive", "use a positive duration"},
		{"ttl over limit", vaultProv + "roles:\n  r:\n    ttl: 13h " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.ttl", "13h exceeds the 12h limit", "lower ttl"},
		{"max_ttl below ttl", vaultProv + "roles:\n  agent-readonly:\n    ttl: 1h\n    max_ttl: 30m " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.agent-readonly.max_ttl", "30m is shorter than ttl 1h", "raise max_ttl or lower ttl"},
		{"max_ttl over limit", vaultProv + "roles:\n  r:\n    max_ttl: 12h1m " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.max_ttl", "12h1m exceeds the 12h limit", "lower max_ttl"},
		{"ttl zero", vaultProv + "roles:\n  r:\n    ttl: 0s " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.ttl", "0s is not positive (a zero would silently mean the default)", "remove the line to get the default (15m here)"},
		{"ttl bare zero", vaultProv + "roles:\n  r:\n    ttl: 0 " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.ttl", "0 is not positive", "write a positive duration"},
		{"ttl below minimum", vaultProv + "roles:\n  r:\n    ttl: 29s " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.ttl", "29s is below the 30s minimum session", "use 30s or more"},
		{"max_ttl below minimum", vaultProv + "roles:\n  r:\n    max_ttl: 20s " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.max_ttl", "20s is below the 30s minimum session; no session of this role could start", "raise max_ttl (and ttl) to 30s or more"},
		{"ttl and max_ttl below minimum", vaultProv + "roles:\n  r:\n    ttl: 20s\n    max_ttl: 20s " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.max_ttl", "20s is below the 30s minimum session", "raise max_ttl (and ttl)"},
		{"max_ttl zero", vaultProv + "roles:\n  r:\n    ttl: 10m\n    max_ttl: 0s " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.max_ttl", "0s is not positive", "the default (1h here)"},
		{"max_ttl negative", vaultProv + "roles:\n  r:\n    max_ttl: -1h " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.max_ttl", "-1h is not positive", "use a positive duration"},
		{"refresh_interval zero", "broker:\n  refresh_interval: 0s " + marker + "\n" + vaultProv + roleR,
			"broker.refresh_interval", "0s is not positive", "the default (5s here)"},
		{"refresh_interval too long", "broker:\n  refresh_interval: 31s " + marker + "\n" + vaultProv + roleR,
			"broker.refresh_interval", "31s is too long", "use 30s or less"},
		{"epoch_ttl zero", vaultProv + "    epoch_ttl: 0s " + marker + "\n" + roleR,
			"providers.vault.epoch_ttl", "0s is not positive", "the default (24h here)"},
		{"no provider block", vaultProv + "roles:\n  r: " + marker + "\n    description: nothing\n",
			"roles.r", "the role grants nothing", "add a provider block"},
		{"vault role without provider", "roles:\n  r:\n    vault: " + marker + "\n      policies: [p]\n",
			"roles.r.vault", "providers.vault is not configured", "add a providers.vault block"},
		{"no policies", vaultProv + "roles:\n  r:\n    vault:\n      policies: [] " + marker + "\n",
			"roles.r.vault.policies", "no policies", "list the Vault policies"},
		{"policies left out", vaultProv + "roles:\n  r:\n    vault: " + marker + "\n      secrets: []\n",
			"roles.r.vault.policies", "no policies", "list the Vault policies"},
		{"root policy", vaultProv + "roles:\n  r:\n    vault:\n      policies:\n        - p\n        - Root " + marker + "\n",
			"roles.r.vault.policies[1]", "root policy is never handed", "narrow policy"},
		{"empty policy", vaultProv + "roles:\n  r:\n    vault:\n      policies:\n        - \"\" " + marker + "\n",
			"roles.r.vault.policies[0]", "empty policy name", "remove the empty entry"},
		{"duplicate secret", vaultProv + roleR + "      secrets:\n        - {name: a, path: kv/data/a}\n        - name: a " + marker + "\n          path: kv/data/b\n",
			"roles.r.vault.secrets[1].name", `"a" is already used by secrets[0]`, "its own name"},
		{"secret name", vaultProv + roleR + "      secrets:\n        - name: a.json " + marker + "\n          path: kv/data/a\n",
			"roles.r.vault.secrets[0].name", `"a.json" is not a valid secret name`, "letters, digits, - and _"},
		{"secret name missing", vaultProv + roleR + "      secrets:\n        - path: kv/data/a " + marker + "\n",
			"roles.r.vault.secrets[0].name", `"" is not a valid secret name`, "letters, digits, - and _"},
		{"secret path missing", vaultProv + roleR + "      secrets:\n        - name: a " + marker + "\n",
			"roles.r.vault.secrets[0].path", "missing", "set the Vault API path"},
		{"secret path absolute", vaultProv + roleR + "      secrets:\n        - name: a\n          path: /v1/kv/data/a " + marker + "\n",
			"roles.r.vault.secrets[0].path", `"/v1/kv/data/a" is absolute`, `without the leading "/"`},
		{"secret method", vaultProv + roleR + "      secrets:\n        - name: a\n          path: kv/data/a\n          method: post " + marker + "\n",
			"roles.r.vault.secrets[0].method", `unknown method "post"`, "use read (the default) or write"},
		{"data with read", vaultProv + roleR + "      secrets:\n        - name: a\n          path: pki/issue/a\n          data: " + marker + "\n            common_name: x\n",
			"roles.r.vault.secrets[0].data", "only sent with method write", "set method: write"},
		{"vault address missing", "providers:\n  vault: " + marker + "\n    token_role: x\n" + roleR,
			"providers.vault.address", "not set", "$VAULT_ADDR"},
		{"vault address not a URL", "providers:\n  vault:\n    address: vault:8200 " + marker + "\n" + roleR,
			"providers.vault.address", `"vault:8200" is not an http(s) URL`, "https://vault.example.com:8200"},
		{"vault address scheme", "providers:\n  vault:\n    address: ftp://vault " + marker + "\n" + roleR,
			"providers.vault.address", "not an http(s) URL", "set address"},
		{"ca_cert relative", vaultProv + "    ca_cert: ca.pem " + marker + "\n" + roleR,
			"providers.vault.ca_cert", `"ca.pem" is not an absolute path`, "use an absolute path"},
		{"two auth methods", vaultProv + "    auth: " + marker + "\n      token_env: T\n      token_file: /t\n" + roleR,
			"providers.vault.auth", "2 login methods are set (token_env, token_file)", "keep exactly one"},
		{"token_env name", vaultProv + "    auth:\n      token_env: 1TOKEN " + marker + "\n" + roleR,
			"providers.vault.auth.token_env", `"1TOKEN" is not an environment variable name`, "name a variable"},
		{"token_file relative", vaultProv + "    auth:\n      token_file: token " + marker + "\n" + roleR,
			"providers.vault.auth.token_file", "not an absolute path", "use an absolute path"},
		{"approle role_id", vaultProv + "    auth:\n      approle: " + marker + "\n        secret_id_env: S\n" + roleR,
			"providers.vault.auth.approle.role_id", "missing", "set role_id"},
		{"approle no secret_id", vaultProv + "    auth:\n      approle: " + marker + "\n        role_id: abc\n" + roleR,
			"providers.vault.auth.approle", "no secret_id source", "set secret_id_file or secret_id_env"},
		{"approle both secret_ids", vaultProv + "    auth:\n      approle:\n        role_id: abc\n        secret_id_file: /s\n        secret_id_env: S " + marker + "\n" + roleR,
			"providers.vault.auth.approle.secret_id_env", "both secret_id_file and secret_id_env", "keep only one"},
		{"approle mount slash", vaultProv + "    auth:\n      approle:\n        mount: /approle/ " + marker + "\n        role_id: abc\n        secret_id_env: S\n" + roleR,
			"providers.vault.auth.approle.mount", "leading or trailing slash", `"approle"`},
		{"epoch_ttl too short", vaultProv + "    epoch_ttl: 2h " + marker + "\nroles:\n  r:\n    ttl: 1h\n    max_ttl: 2h\n    vault:\n      policies: [p]\n",
			"providers.vault.epoch_ttl", "not longer than role r's max_ttl 2h plus 5m; session tokens are children of the epoch token", "raise epoch_ttl above 2h"},
		{"epoch_ttl not positive", vaultProv + "    epoch_ttl: -1h " + marker + "\n" + roleR,
			"providers.vault.epoch_ttl", "-1h is not positive", "positive duration"},
		{"allowed_uids negative", "broker:\n  allowed_uids:\n    - 1000\n    - -1 " + marker + "\n" + vaultProv + roleR,
			"broker.allowed_uids[1]", "uid -1 is negative", "id -u"},
		{"daemon_uid negative", "broker:\n  daemon_uid: -2 " + marker + "\n" + vaultProv + roleR,
			"broker.daemon_uid", "uid -2 is negative", "id -u"},
		{"admin_uids negative", "broker:\n  admin_uids: [-2] " + marker + "\n" + vaultProv + roleR,
			"broker.admin_uids[0]", "uid -2 is negative", "id -u"},
		{"role allowed_uids negative", vaultProv + "roles:\n  r:\n    allowed_uids:\n      - -1 " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.allowed_uids[0]", "uid -1 is negative", "id -u"},
		{"role allowed_groups unknown name", vaultProv + "roles:\n  r:\n    allowed_groups:\n      - root\n      - no-such-group-xyz " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.allowed_groups[1]", `no group "no-such-group-xyz" on this host`, "getent group"},
		{"role allowed_groups negative gid", vaultProv + "roles:\n  r:\n    allowed_groups: [-5] " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.allowed_groups[0]", "gid -5 is negative", "or a gid"},
		{"refresh_interval negative", "broker:\n  refresh_interval: -1s " + marker + "\n" + vaultProv + roleR,
			"broker.refresh_interval", "-1s is not positive", "positive duration"},
		{"socket relative", "broker:\n  socket: broker.sock " + marker + "\n" + vaultProv + roleR,
			"broker.socket", `"broker.sock" is not an absolute path`, "use an absolute path"},
		{"runtime_dir relative", "broker:\n  runtime_dir: run " + marker + "\n  socket: /tmp/s.sock\n" + vaultProv + roleR,
			"broker.runtime_dir", `"run" is not an absolute path`, "use an absolute path"},
		{"state_dir relative", "broker:\n  state_dir: ./state " + marker + "\n  audit_log: /tmp/a.log\nstore:\n  path: /tmp/l.db\n" + vaultProv + roleR,
			"broker.state_dir", `"./state" is not an absolute path`, "use an absolute path"},
		{"audit_log relative", "broker:\n  audit_log: audit.log " + marker + "\n" + vaultProv + roleR,
			"broker.audit_log", "not an absolute path", "use an absolute path"},
		{"store path relative", "store:\n  path: leases.db " + marker + "\n" + vaultProv + roleR,
			"store.path", "not an absolute path", "use an absolute path"},
		{"store unknown driver", "store:\n  driver: mysql " + marker + "\n" + vaultProv + roleR,
			"store.driver", `unknown driver "mysql"`, "use sqlite"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			wantOneError(t, tt.yaml, tt.path, tt.msg, tt.hint)
		})
	}
}

// TestRoleAccessAccepted: group names and gids (a YAML number) both load.
func TestRoleAccessAccepted(t *testing.T) {
	isolateEnv(t)
	yaml := vaultProv + "roles:\n  r:\n    allowed_uids: [0, 65534]\n    allowed_groups: [root, 65534]\n    vault:\n      policies: [p]\n"
	c, err := Load(writeConfig(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Roles["r"]
	if !r.Restricted() || len(r.AllowedUIDs) != 2 || strings.Join(r.AllowedGroups, ",") != "root,65534" {
		t.Fatalf("role = %+v", r)
	}
	for _, g := range r.AllowedGroups {
		if _, err := LookupGroup(g); err != nil {
			t.Errorf("LookupGroup(%q): %v", g, err)
		}
	}
}

func TestValidateStateDirWithoutHome(t *testing.T) {
	isolateEnv(t)
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("HOME", "")
	// Nothing in the file names the field, so the error points at the
	// document's first key.
	yaml := "providers: " + marker + "\n  vault:\n    address: http://127.0.0.1:8200\n" + roleR
	wantOneError(t, yaml, "broker.state_dir", "no default", "set broker.state_dir")
}

func TestLoadReportsEveryProblemInFileOrder(t *testing.T) {
	isolateEnv(t)
	yaml := "store:\n  driver: mysql\n" + vaultProv + "roles:\n  r:\n    ttl: 0s\n    max_ttl: 13h\n    vault:\n      policies: [root]\n"
	_, err := Load(writeConfig(t, yaml))
	fes := fieldErrors(t, err)
	var got []string
	for _, fe := range fes {
		got = append(got, fe.Path)
	}
	want := []string{"store.driver", "roles.r.ttl", "roles.r.max_ttl", "roles.r.vault.policies[0]"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("paths = %v, want %v\n%v", got, want, err)
	}
	if n := strings.Count(err.Error(), "\n"); n != len(want)-1 {
		t.Errorf("want one problem a line, got %d newlines:\n%v", n, err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	isolateEnv(t)
	c := &Config{Roles: map[string]Role{"r": {TTL: Duration(2 * 3600e9), MaxTTL: Duration(3600e9)}}}
	c.ApplyDefaults()
	err := c.Validate()
	want := "roles.r.max_ttl: 1h is shorter than ttl 2h; raise max_ttl or lower ttl"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Validate() = %v, want it to contain %q", err, want)
	}
	if strings.Contains(err.Error(), ":0") {
		t.Errorf("Validate() without a file mentions a position: %v", err)
	}
}

// TestRoleTTLAccepted: the shortest valid sessions load, and an unset ttl
// or max_ttl defaults so as to fit the other.
func TestRoleTTLAccepted(t *testing.T) {
	tests := []struct {
		name, ttls  string
		ttl, maxTTL Duration
	}{
		{"minimum ttl", "    ttl: 30s\n", Duration(30 * time.Second), Duration(time.Hour)},
		{"short max_ttl lowers the default ttl", "    max_ttl: 40s\n", Duration(40 * time.Second), Duration(40 * time.Second)},
		{"long ttl raises the default max_ttl", "    ttl: 2h\n", Duration(2 * time.Hour), Duration(2 * time.Hour)},
		{"neither", "", Duration(DefaultTTL), Duration(DefaultMaxTTL)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			yaml := vaultProv + "roles:\n  r:\n" + tt.ttls + "    vault:\n      policies: [p]\n"
			c, err := Load(writeConfig(t, yaml))
			if err != nil {
				t.Fatal(err)
			}
			if r := c.Roles["r"]; r.TTL != tt.ttl || r.MaxTTL != tt.maxTTL {
				t.Errorf("ttl, max_ttl = %s, %s; want %s, %s", r.TTL, r.MaxTTL, tt.ttl, tt.maxTTL)
			}
		})
	}
}
