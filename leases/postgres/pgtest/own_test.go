package pgtest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// A test's own cluster stops like an outage (logins refused) and comes
// back on the same port with its data.
func TestOwnClusterStopsAndStartsAgain(t *testing.T) {
	c := Start(t, Options{Allow: []string{"10.123.0.0/16"}})
	db := c.NewDB(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE kept (x int); INSERT INTO kept VALUES (42)"); err != nil {
		t.Fatal(err)
	}
	port := c.Port()
	c.Stop(t)
	if err := conn.Ping(ctx); err == nil {
		t.Error("a connection survived Stop")
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := pgx.Connect(cctx, db.DSN()); err == nil {
		t.Fatal("connected to a stopped cluster")
	}
	c.Start(t)
	if c.Port() != port {
		t.Errorf("port %d after Start, was %d", c.Port(), port)
	}
	conn, err = pgx.Connect(ctx, db.DSN())
	if err != nil {
		t.Fatalf("connect after Start: %v", err)
	}
	defer conn.Close(ctx)
	var x int
	if err := conn.QueryRow(ctx, "SELECT x FROM kept").Scan(&x); err != nil || x != 42 {
		t.Errorf("data after restart: %d, %v", x, err)
	}
	hba, err := Superuser(t, db).Query(ctx, "SELECT address FROM pg_hba_file_rules WHERE address IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := pgx.CollectRows(hba, pgx.RowTo[string])
	if err != nil || !strings.Contains(strings.Join(addrs, " "), "10.123.0.0") {
		t.Errorf("pg_hba.conf addresses %v (%v), want 10.123.0.0/16 among them", addrs, err)
	}
}

func TestOwnClusterRefusesABadNetwork(t *testing.T) {
	c := &cluster{dir: t.TempDir(), opts: Options{Allow: []string{"not-a-cidr"}}}
	if err := c.allowNetworks(); err == nil {
		t.Error("allowNetworks accepted an invalid CIDR")
	}
}
