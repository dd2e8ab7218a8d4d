package pgtest

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestNewDBIsEmptyAndOwnedByTheTestRole(t *testing.T) {
	a, b := NewDB(t), NewDB(t)
	if a.Name == b.Name {
		t.Fatalf("two NewDB calls returned the same database %q", a.Name)
	}
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, a.DSN())
	if err != nil {
		t.Fatalf("connect as %s: %v", a.User, err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE x (id int)"); err != nil {
		t.Fatalf("the test role cannot create tables in its database: %v", err)
	}
	var user string
	var super bool
	if err := conn.QueryRow(ctx, "SELECT current_user, usesuper FROM pg_user WHERE usename = current_user").Scan(&user, &super); err != nil {
		t.Fatal(err)
	}
	if user != TestRole || super {
		t.Errorf("connected as %q (superuser %v), want %q without superuser", user, super, TestRole)
	}

	var n int
	err = Superuser(t, b).QueryRow(ctx,
		"SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')").Scan(&n)
	if err != nil || n != 0 {
		t.Errorf("a second database has %d tables, %v; want 0", n, err)
	}
}

func TestPasswordIsRequired(t *testing.T) {
	db := NewDB(t)
	conn, err := pgx.Connect(t.Context(), db.DSNWithPassword("wrong"))
	if err == nil {
		conn.Close(t.Context())
		t.Fatal("connected with a wrong password")
	}
}

func TestMissingServerSaysHowToInstall(t *testing.T) {
	t.Setenv(BinDirEnv, t.TempDir())
	_, err := findBinDir()
	if err == nil || !strings.Contains(err.Error(), "make testbins") {
		t.Errorf("findBinDir with no server: error = %v, want one that says to run make testbins", err)
	}
}

func TestRemoveStaleKeepsLiveAndYoungDirs(t *testing.T) {
	parent := t.TempDir()
	mk := func(name, pid string, age time.Duration) string {
		dir := filepath.Join(parent, dirPattern+name)
		if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
			t.Fatal(err)
		}
		if pid != "" {
			if err := os.WriteFile(filepath.Join(dir, "data", "postmaster.pid"), []byte(pid+"\n/data\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(dir, old, old); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	// A pid above the kernel's pid_max (4194304 at most) never runs.
	dead := mk("dead", "99999999", time.Hour)
	noPid := mk("nopid", "", time.Hour)
	live := mk("live", strconv.Itoa(os.Getpid()), time.Hour)
	young := mk("young", "", time.Second)
	removeStale(parent)
	for dir, want := range map[string]bool{dead: false, noPid: false, live: true, young: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s: exists = %v, want %v", filepath.Base(dir), err == nil, want)
		}
	}
}
