package configs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadDecodeErrors checks errors the strict decoder finds: each points
// at its line and field and says how to fix it.
func TestLoadDecodeErrors(t *testing.T) {
	tests := []struct {
		name, yaml, path, msg, hint string
	}{
		{"unknown field with suggestion", vaultProv + "roles:\n  r:\n    maxttl: 1h " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.maxttl", `unknown field "maxttl"`, `did you mean "max_ttl"?`},
		{"unknown field lists allowed", vaultProv + "    colour: blue " + marker + "\n" + roleR,
			"providers.vault.colour", `unknown field "colour"`, "remove it or use one of: address, namespace"},
		{"unknown top-level field", "brokr: " + marker + "\n  socket: /x\n" + vaultProv + roleR,
			"brokr", `unknown field "brokr"`, `did you mean "broker"?`},
		{"unknown field in list item", vaultProv + roleR + "      secrets:\n        - name: a\n          path: kv/a\n          metod: write " + marker + "\n",
			"roles.r.vault.secrets[0].metod", `unknown field "metod"`, `did you mean "method"?`},
		{"bad duration", vaultProv + "roles:\n  r:\n    ttl: 15 " + marker + "\n    vault:\n      policies: [p]\n",
			"roles.r.ttl", `"15" is not a duration`, "such as 90s, 15m or 1h30m"},
		{"duration as mapping", vaultProv + "    epoch_ttl: {hours: 1} " + marker + "\n" + roleR,
			"providers.vault.epoch_ttl", "expected a duration, got a mapping", "such as 90s"},
		{"string for a number", "broker:\n  allowed_uids: [me] " + marker + "\n" + vaultProv + roleR,
			"broker.allowed_uids[0]", `expected a whole number, got "me"`, "number without quotes"},
		{"mapping for a list", vaultProv + "roles:\n  r:\n    vault:\n      policies: " + marker + "\n        p: x\n",
			"roles.r.vault.policies", "expected a list of strings, got a mapping", "write a list"},
		{"string for a mapping", vaultProv + "roles:\n  r: readonly " + marker + "\n",
			"roles.r", `expected a mapping, got "readonly"`, "write a mapping of: description, ttl, max_ttl, allowed_uids"},
		{"duplicate key", vaultProv + roleR + "  r: " + marker + "\n    ttl: 1m\n",
			"roles.r", `"r" is set twice (first at line 5)`, "remove one of them"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			wantOneError(t, tt.yaml, tt.path, tt.msg, tt.hint)
		})
	}
}

func TestLoadUnknownFieldColumn(t *testing.T) {
	isolateEnv(t)
	file := writeConfig(t, vaultProv+"roles:\n  r:\n    vault:\n      policies: [p]\n      polices: [q]\n")
	_, err := Load(file)
	want := file + ":8:7: roles.r.vault.polices: unknown field \"polices\"; did you mean \"policies\"?"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v\nwant prefix %s", err, want)
	}
}

func TestLoadFileErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"syntax", "roles:\n  r: [\n", "fix the YAML syntax"},
		{"unclosed flow list names its own line", "a: 1\nb: 2\nsocket: [unclosed\nd: 4\n", ":3: did not find expected ',' or ']'"},
		{"tab indent", "roles:\n\tr: {}\n", ":2: found character that cannot start any token; fix the YAML syntax"},
		{"empty", "", "the file is empty; start from the example"},
		{"only comments", "# nothing\n", "the file is empty"},
		{"two documents", vaultProv + roleR + "---\nroles: {}\n", ":8:1: a second YAML document starts here; keep the whole config in one document"},
		{"not a mapping", "- a\n- b\n", ":1:1: expected a mapping, got a list; write a mapping of: broker, store, providers, roles"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			file := writeConfig(t, tt.yaml)
			_, err := Load(file)
			if err == nil || !strings.HasPrefix(err.Error(), file+":") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant %s...%s", err, file, tt.want)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestLoadFillsNamesAndDefaults(t *testing.T) {
	dir := isolateEnv(t)
	c, err := Load(writeConfig(t, vaultProv+roleR))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Roles["r"]
	if r.Name != "r" || r.TTL.D() != DefaultTTL || r.MaxTTL.D() != DefaultMaxTTL {
		t.Errorf("role = %+v", r)
	}
	if want := filepath.Join(dir, "run", "credbroker", "broker.sock"); c.Broker.Socket != want {
		t.Errorf("socket = %q, want %q", c.Broker.Socket, want)
	}
	if !strings.HasSuffix(c.Path, "config.yaml") {
		t.Errorf("Path = %q", c.Path)
	}
}

func TestLoadTestdata(t *testing.T) {
	isolateEnv(t)
	for _, name := range []string{"approle.yaml", "paths.yaml"} {
		t.Run(name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join("testdata", name)); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(filepath.Join("testdata", name)); err != nil {
				t.Fatal(err)
			}
		})
	}
}
