package postgres

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/internal/tcpproxy"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
)

// watcher runs WatchIncident on s until the test ends and collects what it
// reports.
type watcher struct {
	got  chan leases.Incident
	mu   sync.Mutex
	lost []error
}

func startWatch(t *testing.T, s *Store) *watcher {
	t.Helper()
	w := &watcher{got: make(chan leases.Incident, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.WatchIncident(ctx, func(in leases.Incident) { w.got <- in }, func(err error) {
			w.mu.Lock()
			w.lost = append(w.lost, err)
			w.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

func (w *watcher) lostCount() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.lost)
}

// listening waits until the store's LISTEN connection is in place.
func listening(t *testing.T, su *pgxpool.Pool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		err := su.QueryRow(t.Context(), `SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE '%' || $1`, watchAppSuffix).Scan(&n)
		if err == nil && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no LISTEN connection after 10s (%v)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One broker declares, another hears it through PostgreSQL at once.
func TestWatchHearsAnotherBroker(t *testing.T) {
	db := pgtest.NewDB(t)
	a := open(t, db.DSN(), WithHostID("a"))
	defer closeStore(t, a)
	b := open(t, db.DSN(), WithHostID("b"))
	defer closeStore(t, b)
	w := startWatch(t, b)
	listening(t, pgtest.Superuser(t, db))

	start := time.Now()
	in := leases.Incident{Reason: "leaked", DeclaredAt: t0, CallerUID: 7}
	must(t, a.SetIncident(t.Context(), in))
	select {
	case got := <-w.got:
		t.Logf("heard after %v", time.Since(start))
		if got.Reason != in.Reason || got.CallerUID != 7 || !got.DeclaredAt.Equal(t0) {
			t.Errorf("heard %+v, want %+v", got, in)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the other broker heard nothing within 5s")
	}
	if n := w.lostCount(); n != 0 {
		t.Errorf("the watch was interrupted %d times: %v", n, w.lost)
	}
}

// A broker cut off from the database misses the notice; as soon as it can
// reconnect it reads the lock and reports it.
func TestWatchReadsTheLockAfterReconnecting(t *testing.T) {
	db := pgtest.NewDB(t)
	a := open(t, db.DSN())
	defer closeStore(t, a)
	proxy := tcpproxy.Start(t, db.Host+":"+strconv.Itoa(db.Port))
	host, port, _ := strings.Cut(proxy.Addr, ":")
	viaProxy := db.At(host)
	viaProxy.Port, _ = strconv.Atoi(port)
	b := open(t, viaProxy.DSN())
	defer closeStore(t, b)
	w := startWatch(t, b)
	listening(t, pgtest.Superuser(t, db))

	proxy.SetUp(false)
	deadline := time.Now().Add(10 * time.Second)
	for w.lostCount() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the watch did not notice it was cut off within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	must(t, a.SetIncident(t.Context(), leases.Incident{Reason: "while b was away", DeclaredAt: t0}))
	select {
	case got := <-w.got:
		t.Fatalf("reported %+v while cut off", got)
	case <-time.After(300 * time.Millisecond):
	}

	back := time.Now()
	proxy.SetUp(true)
	select {
	case got := <-w.got:
		t.Logf("reported %v after the connection came back", time.Since(back))
		if got.Reason != "while b was away" {
			t.Errorf("reported %+v", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not reported within 5s of reconnecting")
	}
}

// Without connect_timeout in the DSN, connecting gives up after
// defaultConnectTimeout rather than waiting for TCP; a DSN's own wins.
func TestConnectTimeout(t *testing.T) {
	for dsn, want := range map[string]time.Duration{
		"postgres://u@db.example/x":                   defaultConnectTimeout,
		"postgres://u@db.example/x?connect_timeout=2": 2 * time.Second,
	} {
		cfg, err := pgxpool.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		failFast(cfg.ConnConfig)
		if cfg.ConnConfig.ConnectTimeout != want || cfg.ConnConfig.DialFunc == nil {
			t.Errorf("%s: connect timeout %v (dialer set: %v), want %v", dsn, cfg.ConnConfig.ConnectTimeout, cfg.ConnConfig.DialFunc != nil, want)
		}
	}
}
