package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"slices"
	"testing"
)

// rawDB opens path with the store's settings but without migrating.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", dsn(path))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func versions(t *testing.T, db *sql.DB) []int {
	t.Helper()
	rows, err := db.QueryContext(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return vs
}

func upTo(n int) []int {
	vs := make([]int, n)
	for i := range vs {
		vs[i] = i + 1
	}
	return vs
}

func tableExists(t *testing.T, db *sql.DB, name string) bool {
	t.Helper()
	var n int
	err := db.QueryRowContext(t.Context(),
		`SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?`, name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestMigrationsIdempotentOnReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	for range 3 {
		closeStore(t, open(t, path))
	}
	if got, want := versions(t, rawDB(t, path)), upTo(len(migrations)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

func TestMigrateAppliesOnlyMissing(t *testing.T) {
	ctx := context.Background()
	db := rawDB(t, filepath.Join(t.TempDir(), "leases.db"))
	if err := migrate(ctx, db, migrations); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO intents (id, session_id, provider, data) VALUES ('i1', 's', 'p', '{}')`); err != nil {
		t.Fatal(err)
	}
	// Were migration 1 applied again, CREATE TABLE would fail.
	next := append(slices.Clone(migrations), `CREATE TABLE extra (x INTEGER) STRICT`)
	if err := migrate(ctx, db, next); err != nil {
		t.Fatalf("migrate to %d: %v", len(next), err)
	}
	if got, want := versions(t, db), upTo(len(next)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	if !tableExists(t, db, "extra") {
		t.Error("new migration not applied")
	}
	var n int
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM intents`).Scan(&n); err != nil || n != 1 {
		t.Errorf("intents after migrating = %d, %v; want 1", n, err)
	}
}

func TestMigrateFailureChangesNothing(t *testing.T) {
	ctx := context.Background()
	db := rawDB(t, filepath.Join(t.TempDir(), "leases.db"))
	bad := append(slices.Clone(migrations),
		`CREATE TABLE half (x INTEGER) STRICT`,
		`THIS IS NOT SQL`)
	if err := migrate(ctx, db, bad); err == nil {
		t.Fatal("migrate with a broken migration succeeded")
	}
	if tableExists(t, db, "sessions") || tableExists(t, db, "half") {
		t.Error("a failed migration left tables behind")
	}
	if err := migrate(ctx, db, migrations); err != nil {
		t.Fatalf("migrate after a failed one: %v", err)
	}
	if got, want := versions(t, db), upTo(len(migrations)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}
