package storeopen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
	"github.com/credbroker/credbroker/leases/sqlite"
)

func TestOpenStoreSQLiteByDefault(t *testing.T) {
	st, err := Open(t.Context(), configs.Store{Driver: "sqlite", Path: filepath.Join(t.TempDir(), "leases.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, ok := st.(*sqlite.Store); !ok {
		t.Errorf("Open(sqlite) = %T", st)
	}
}

// The daemon reaches a real PostgreSQL through either DSN source.
func TestOpenStorePostgres(t *testing.T) {
	db := pgtest.NewDB(t)
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(db.DSN()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_STORE_DSN", " "+db.DSN()+" ")
	for name, c := range map[string]configs.Store{
		"dsn_env":  {Driver: "postgres", DSNEnv: "TEST_STORE_DSN"},
		"dsn_file": {Driver: "postgres", DSNFile: file},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := Open(t.Context(), c)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			if _, ok := st.(*postgres.Store); !ok {
				t.Fatalf("Open(postgres) = %T", st)
			}
			if err := st.CreateSession(t.Context(), leases.Session{ID: name, State: leases.SessionActive}); err != nil {
				t.Fatal(err)
			}
		})
	}

	t.Setenv("TEST_STORE_DSN", db.DSNWithPassword("Wr0ngS3cret"))
	_, err := Open(t.Context(), configs.Store{Driver: "postgres", DSNEnv: "TEST_STORE_DSN"})
	if err == nil || strings.Contains(err.Error(), "Wr0ngS3cret") || !strings.Contains(err.Error(), "open lease store") {
		t.Errorf("Open with a wrong password: error = %v; want one without the password", err)
	}
}

func TestReadDSNErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_STORE_DSN_UNSET", "")
	cases := []struct {
		name string
		c    configs.Store
		want string
	}{
		{"env unset", configs.Store{DSNEnv: "TEST_STORE_DSN_UNSET"}, "TEST_STORE_DSN_UNSET (store.dsn_env) is not set"},
		{"file missing", configs.Store{DSNFile: "/nonexistent/dsn"}, "/nonexistent/dsn"},
		{"file empty", configs.Store{DSNFile: empty}, "is empty"},
		{"no source", configs.Store{}, "needs dsn_env or dsn_file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readDSN(tc.c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("readDSN: error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}
