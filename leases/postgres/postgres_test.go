package postgres

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
	"github.com/credbroker/credbroker/leases/storetest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Each subtest gets a database of its own, created empty from template0 and
// dropped afterwards, so Open migrates from nothing every time.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) leases.Store {
		return open(t, pgtest.NewDB(t).DSN())
	})
}

// The suite again with the exec modes a connection pooler in front of
// PostgreSQL (PgBouncer in transaction mode) needs, chosen in the DSN: no
// server-side prepared statements, and RecordLeases's batch still atomic.
func TestConformanceWithoutPreparedStatements(t *testing.T) {
	for _, mode := range []string{"simple_protocol", "exec"} {
		t.Run(mode, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) leases.Store {
				return open(t, pgtest.NewDB(t).DSN()+"&default_query_exec_mode="+mode)
			})
		})
	}
}

// open opens the store at dsn or fails the test; the caller closes it.
func open(t *testing.T, dsn string, opts ...Option) *Store {
	t.Helper()
	s, err := Open(t.Context(), dsn, opts...)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 123456000, time.UTC)

func TestCloseEndsUse(t *testing.T) {
	s := open(t, pgtest.NewDB(t).DSN())
	closeStore(t, s)
	closeStore(t, s) // twice is harmless
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := s.GetSession(ctx, "s1"); err == nil {
		t.Error("GetSession after Close succeeded")
	} else if errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("GetSession after Close waited for a connection: %v", err)
	}
}

func TestHostIDStampsSessions(t *testing.T) {
	ctx := t.Context()
	db := pgtest.NewDB(t)
	a := open(t, db.DSN(), WithHostID("runner-a"))
	defer closeStore(t, a)
	b := open(t, db.DSN())
	defer closeStore(t, b)
	must(t, a.CreateSession(ctx, leases.Session{ID: "s-a", State: leases.SessionActive}))
	must(t, b.CreateSession(ctx, leases.Session{ID: "s-b", State: leases.SessionActive}))
	// An update from another host keeps the owner.
	must(t, b.UpdateSession(ctx, leases.Session{ID: "s-a", State: leases.SessionEnding}))

	su := pgtest.Superuser(t, db)
	for id, want := range map[string]string{"s-a": "runner-a", "s-b": ""} {
		var got string
		if err := su.QueryRow(ctx, `SELECT host_id FROM sessions WHERE id = $1`, id).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("host_id of %s = %q, want %q", id, got, want)
		}
	}
}

func TestTimeRange(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.NewDB(t).DSN())
	defer closeStore(t, s)
	for i, at := range []time.Time{minTime, maxTime.Truncate(time.Microsecond)} {
		id := string(rune('a' + i))
		must(t, s.CreateSession(ctx, leases.Session{ID: id, CreatedAt: at}))
		got, err := s.GetSession(ctx, id)
		must(t, err)
		if !got.CreatedAt.Equal(at) {
			t.Errorf("CreatedAt %v read back as %v", at, got.CreatedAt)
		}
	}
	for _, at := range []time.Time{minTime.Add(-time.Microsecond), maxTime.Add(time.Microsecond)} {
		err := s.CreateSession(ctx, leases.Session{ID: "far", CreatedAt: at})
		if err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("CreateSession at %v: error = %v, want out of range", at, err)
		}
	}
}

// Sub-microsecond digits are dropped, never rounded up, so a time never
// reads back later than it was written.
func TestTimeTruncatedToMicroseconds(t *testing.T) {
	ctx := t.Context()
	s := open(t, pgtest.NewDB(t).DSN())
	defer closeStore(t, s)
	at := t0.Add(999 * time.Nanosecond)
	must(t, s.CreateSession(ctx, leases.Session{ID: "s1", CreatedAt: at}))
	got, err := s.GetSession(ctx, "s1")
	must(t, err)
	if want := at.Truncate(time.Microsecond); !got.CreatedAt.Equal(want) {
		t.Errorf("CreatedAt = %v, want %v", got.CreatedAt, want)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
