package postgres

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/leases/postgres/pgtest"
)

// rawPool connects to db as the test role without migrating.
func rawPool(t *testing.T, db pgtest.DB) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(t.Context(), db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func versions(t *testing.T, db *pgxpool.Pool) []int {
	t.Helper()
	rows, err := db.Query(t.Context(), `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
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

func tableExists(t *testing.T, db *pgxpool.Pool, name string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow(t.Context(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// Five brokers starting at once on an empty database: all open, and one of
// them applied every migration, in one transaction.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	db := pgtest.NewDB(t)
	const n = 5
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  = make([]error, n)
	)
	for i := range n {
		wg.Go(func() {
			<-start
			s, err := Open(t.Context(), db.DSN())
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Open: %v", err)
	}
	raw := rawPool(t, db)
	if got, want := versions(t, raw), upTo(len(migrations)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	// xmin is the id of the transaction that wrote a row.
	var writers int
	if err := raw.QueryRow(t.Context(), `SELECT count(DISTINCT xmin::text) FROM schema_migrations`).Scan(&writers); err != nil {
		t.Fatal(err)
	}
	if writers != 1 {
		t.Errorf("schema_migrations rows were written by %d transactions, want 1", writers)
	}
}

// Open waits for the advisory lock another broker holds while migrating,
// and proceeds once it is released.
func TestOpenWaitsForMigrationLock(t *testing.T) {
	ctx := t.Context()
	db := pgtest.NewDB(t)
	holder, err := pgtest.Superuser(t, db).Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Rollback(context.Background()) }()
	if _, err := holder.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
		t.Fatal(err)
	}

	opened := make(chan error, 1)
	go func() {
		s, err := Open(ctx, db.DSN())
		if err == nil {
			err = s.Close()
		}
		opened <- err
	}()
	// Wait until the opener is seen queued on the advisory lock.
	waitFor(t, func() bool {
		var n int
		err := holder.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&n)
		return err == nil && n == 1
	})
	select {
	case err := <-opened:
		t.Fatalf("Open returned while the migration lock was held: %v", err)
	default:
	}
	if err := holder.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-opened; err != nil {
		t.Fatalf("Open after the lock was released: %v", err)
	}
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMigrationsIdempotentOnReopen(t *testing.T) {
	db := pgtest.NewDB(t)
	for range 3 {
		closeStore(t, open(t, db.DSN()))
	}
	if got, want := versions(t, rawPool(t, db)), upTo(len(migrations)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

func TestMigrateAppliesOnlyMissing(t *testing.T) {
	ctx := t.Context()
	raw := rawPool(t, pgtest.NewDB(t))
	if err := migrate(ctx, raw, migrations); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(ctx, `INSERT INTO intents (id, session_id, provider, data) VALUES ('i1', 's', 'p', '{}')`); err != nil {
		t.Fatal(err)
	}
	// Were migration 1 applied again, CREATE TABLE would fail.
	next := append(slices.Clone(migrations), `CREATE TABLE extra (x integer)`)
	if err := migrate(ctx, raw, next); err != nil {
		t.Fatalf("migrate to %d: %v", len(next), err)
	}
	if got, want := versions(t, raw), upTo(len(next)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
	if !tableExists(t, raw, "extra") {
		t.Error("new migration not applied")
	}
	var n int
	if err := raw.QueryRow(ctx, `SELECT count(*) FROM intents`).Scan(&n); err != nil || n != 1 {
		t.Errorf("intents after migrating = %d, %v; want 1", n, err)
	}
}

func TestMigrateFailureChangesNothing(t *testing.T) {
	ctx := t.Context()
	raw := rawPool(t, pgtest.NewDB(t))
	bad := append(slices.Clone(migrations), `CREATE TABLE half (x integer)`, `THIS IS NOT SQL`)
	if err := migrate(ctx, raw, bad); err == nil {
		t.Fatal("migrate with a broken migration succeeded")
	}
	for _, table := range []string{"schema_migrations", "sessions", "half"} {
		if tableExists(t, raw, table) {
			t.Errorf("a failed migration left table %s behind", table)
		}
	}
	if err := migrate(ctx, raw, migrations); err != nil {
		t.Fatalf("migrate after a failed one: %v", err)
	}
	if got, want := versions(t, raw), upTo(len(migrations)); !slices.Equal(got, want) {
		t.Errorf("schema_migrations = %v, want %v", got, want)
	}
}

func TestSchemaTooNewIsRefused(t *testing.T) {
	db := pgtest.NewDB(t)
	closeStore(t, open(t, db.DSN()))
	if _, err := rawPool(t, db).Exec(t.Context(),
		`INSERT INTO schema_migrations (version) VALUES ($1)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}

	_, err := Open(t.Context(), db.DSN())
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: error = %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{"127.0.0.1", db.Name, "upgrade credbroker", "newer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if strings.Contains(err.Error(), db.Password) {
		t.Errorf("error %q holds the password", err)
	}
}
