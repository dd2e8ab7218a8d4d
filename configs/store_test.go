package configs

import "testing"

func TestStorePostgresValid(t *testing.T) {
	for name, block := range map[string]string{
		"dsn_env":  "store:\n  driver: postgres\n  dsn_env: CREDBROKER_DSN\n",
		"dsn_file": "store:\n  driver: postgres\n  dsn_file: /etc/credbroker/dsn\n",
	} {
		t.Run(name, func(t *testing.T) {
			isolateEnv(t)
			c, err := Load(writeConfig(t, block+vaultProv+roleR))
			if err != nil {
				t.Fatal(err)
			}
			// No SQLite file is defaulted for a postgres store.
			if c.Store.Path != "" {
				t.Errorf("store.path = %q, want empty", c.Store.Path)
			}
		})
	}
}

func TestStoreRules(t *testing.T) {
	tests := []struct {
		name, yaml, path, msg, hint string
	}{
		{"postgres without a DSN", "store: " + marker + "\n  driver: postgres\n",
			"store", "driver postgres needs a DSN", "set dsn_env"},
		{"postgres with both sources", "store:\n  driver: postgres\n  dsn_env: DSN\n  dsn_file: /dsn " + marker + "\n",
			"store.dsn_file", "both dsn_env and dsn_file are set", "keep only one"},
		{"dsn_env name", "store:\n  driver: postgres\n  dsn_env: 1DSN " + marker + "\n",
			"store.dsn_env", `"1DSN" is not an environment variable name`, "name a variable"},
		{"dsn_file relative", "store:\n  driver: postgres\n  dsn_file: dsn " + marker + "\n",
			"store.dsn_file", `"dsn" is not an absolute path`, "use an absolute path"},
		{"path with postgres", "store:\n  driver: postgres\n  dsn_env: DSN\n  path: /l.db " + marker + "\n",
			"store.path", "only used by driver sqlite", "remove it"},
		{"dsn_env with sqlite", "store:\n  dsn_env: DSN " + marker + "\n",
			"store.dsn_env", "only used by driver postgres", "set driver: postgres"},
		{"dsn_file with sqlite", "store:\n  driver: sqlite\n  dsn_file: /dsn " + marker + "\n",
			"store.dsn_file", "only used by driver postgres", "set driver: postgres"},
		{"postgresql spelling", "store:\n  driver: postgresql " + marker + "\n  dsn_env: DSN\n",
			"store.driver", `unknown driver "postgresql"`, "write driver: postgres"},
		// A DSN usually holds a password, so the file cannot carry one.
		{"inline dsn", "store:\n  driver: postgres\n  dsn: postgres://u:pw@db/leases " + marker + "\n",
			"store.dsn", `unknown field "dsn"`, "dsn_env"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			isolateEnv(t)
			wantOneError(t, tt.yaml+vaultProv+roleR, tt.path, tt.msg, tt.hint)
		})
	}
}
