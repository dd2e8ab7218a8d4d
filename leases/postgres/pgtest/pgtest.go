// Package pgtest runs throwaway PostgreSQL clusters for tests and hands each
// test its own empty database. A cluster is Debian's PostgreSQL server
// (installed by make testbins), started from initdb in a temporary
// directory, listening on 127.0.0.1 with password authentication only.
//
// A package whose TestMain calls Main shares one cluster between all its
// tests, started by the first NewDB and stopped when the tests end:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
//	func TestX(t *testing.T) {
//		db := pgtest.NewDB(t)
//		s, err := postgres.Open(t.Context(), db.DSN())
//		...
//	}
//
// Elsewhere each NewDB starts a cluster of its own (about a second), stopped
// in t.Cleanup.
//
// A test that must stop and restart the server (an outage), or reach it
// from Docker containers, starts its own with Start:
//
//	c := pgtest.Start(t, pgtest.Options{Listen: []string{gateway}, Allow: []string{subnet}})
//	db := c.NewDB(t).At(gateway)
//	c.Stop(t) // ... c.Start(t)
package pgtest

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
)

// TestRole is the password-authenticated role that owns every test database.
// It is not a superuser, like the role a broker would be given.
const TestRole = "credbroker_test"

// DB is one test database. Its fields are what a DSN is built from.
type DB struct {
	Host     string
	Port     int
	Name     string
	User     string
	Password string

	c *cluster
}

// DSN returns the database's URL, password included.
func (d DB) DSN() string { return d.DSNWithPassword(d.Password) }

// DSNWithPassword returns the database's URL with pw as the password, for
// tests of what happens when it is wrong.
func (d DB) DSNWithPassword(pw string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.UserPassword(d.User, pw),
		Host:     net.JoinHostPort(d.Host, strconv.Itoa(d.Port)),
		Path:     "/" + d.Name,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// The package's cluster when Main runs: started by the first NewDB,
// stopped by Main.
var (
	inMain   atomic.Bool
	startMu  sync.Mutex
	shared   *cluster
	startErr error
	dbSeq    atomic.Int64
)

// Main runs the package's tests and then stops the cluster if a test
// started one. Call it from TestMain and pass its result to os.Exit.
func Main(m *testing.M) int {
	inMain.Store(true)
	code := m.Run()
	startMu.Lock()
	defer startMu.Unlock()
	if shared != nil {
		if err := shared.stop(); err != nil {
			fmt.Printf("pgtest: stop PostgreSQL: %v\n", err)
			if code == 0 {
				code = 1
			}
		}
		shared = nil
	}
	return code
}

// NewDB creates an empty database owned by TestRole and drops it when tb
// ends. A cluster that cannot start fails the test: it is never skipped.
func NewDB(tb testing.TB) DB {
	tb.Helper()
	return newDB(tb, clusterFor(tb))
}

func newDB(tb testing.TB, c *cluster) DB {
	tb.Helper()
	name := fmt.Sprintf("t%d", dbSeq.Add(1))
	ctx := context.Background()
	// template0 is the pristine template: nothing another test did to
	// template1 can leak in.
	if _, err := c.admin.Exec(ctx, "CREATE DATABASE "+name+" OWNER "+TestRole+" TEMPLATE template0"+c.createOpts); err != nil {
		tb.Fatalf("pgtest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		// FORCE ends connections a failed test may have left open.
		if _, err := c.admin.Exec(context.Background(), "DROP DATABASE "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return DB{Host: "127.0.0.1", Port: c.port, Name: name, User: TestRole, Password: c.rolePassword, c: c}
}

// Superuser returns a connection pool on db as the cluster's superuser, for
// tests that must look at or tamper with a database behind the store's back.
// It is closed when tb ends.
func Superuser(tb testing.TB, db DB) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(db.c.superDSN(db.Name))
	if err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	p, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("pgtest: connect to %s as superuser: %v", db.Name, err)
	}
	tb.Cleanup(p.Close)
	return p
}

// clusterFor returns the package's cluster under Main, else a new one that
// tb's cleanup stops.
func clusterFor(tb testing.TB) *cluster {
	tb.Helper()
	if !inMain.Load() {
		return Start(tb, Options{}).c
	}
	startMu.Lock()
	defer startMu.Unlock()
	if shared == nil && startErr == nil {
		shared, startErr = start(Options{})
	}
	if startErr != nil {
		tb.Fatalf("pgtest: start PostgreSQL: %v", startErr)
	}
	return shared
}

// createRole makes TestRole, a plain login role with a password: databases
// are created for it by NewDB, as an operator would for a broker.
func createRole(ctx context.Context, admin *pgxpool.Pool, password string) error {
	q := "CREATE ROLE " + TestRole + " LOGIN PASSWORD " + quoteLiteral(password)
	if _, err := admin.Exec(ctx, q); err != nil {
		return fmt.Errorf("create role %s: %w", TestRole, err)
	}
	return nil
}

// quoteLiteral quotes s as an SQL string literal (CREATE ROLE takes no
// parameters).
func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}
