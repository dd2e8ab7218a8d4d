package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// watchTests run only against stores that implement leases.IncidentWatcher.
var watchTests = []test{
	{"ReportsSet", testWatchReportsSet},
	{"ReportsLockInPlace", testWatchReportsLockInPlace},
	{"QuietWithoutIncident", testWatchQuiet},
	{"StopsWithContext", testWatchStops},
}

// noticeWait bounds how long a notice may take: far more than it needs.
const noticeWait = 10 * time.Second

// watch starts WatchIncident on s and returns the incidents it reports.
func watch(t *testing.T, s leases.Store) <-chan leases.Incident {
	t.Helper()
	w, ok := s.(leases.IncidentWatcher)
	if !ok {
		t.Fatalf("%T is not a leases.IncidentWatcher", s)
	}
	got := make(chan leases.Incident, 100)
	done := make(chan struct{})
	ctx, cancel := context.WithCancel(t.Context())
	go func() {
		defer close(done)
		_ = w.WatchIncident(ctx, func(in leases.Incident) { got <- in }, func(err error) { t.Logf("watch lost: %v", err) })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return got
}

func nextIncident(t *testing.T, got <-chan leases.Incident, what string) leases.Incident {
	t.Helper()
	select {
	case in := <-got:
		return in
	case <-time.After(noticeWait):
		t.Fatalf("no incident reported within %s %s", noticeWait, what)
		return leases.Incident{}
	}
}

func testWatchReportsSet(t *testing.T, s leases.Store) {
	got := watch(t, s)
	// Give the watch time to start listening; a notice it would miss by
	// starting late is still reported, as the lock in place.
	time.Sleep(100 * time.Millisecond)
	in := leases.Incident{Reason: "key in a CI log", DeclaredAt: at(0), CallerUID: 1000}
	must(t, s.SetIncident(t.Context(), in), "SetIncident")
	check(t, "reported incident", nextIncident(t, got, "after SetIncident"), in, normIncident)

	second := leases.Incident{Reason: "second", DeclaredAt: at(time.Minute)}
	must(t, s.SetIncident(t.Context(), second), "SetIncident again")
	for {
		// The first may be reported again before the second.
		if r := nextIncident(t, got, "after the second SetIncident"); r.Reason == second.Reason {
			check(t, "second reported incident", r, second, normIncident)
			break
		}
	}
}

func testWatchReportsLockInPlace(t *testing.T, s leases.Store) {
	in := leases.Incident{Reason: "declared before the watch", DeclaredAt: at(0), CallerUID: 0}
	must(t, s.SetIncident(t.Context(), in), "SetIncident")
	got := watch(t, s)
	check(t, "reported incident", nextIncident(t, got, "for a lock set before the watch"), in, normIncident)
}

func testWatchQuiet(t *testing.T, s leases.Store) {
	got := watch(t, s)
	must(t, s.ClearIncident(t.Context()), "ClearIncident")
	select {
	case in := <-got:
		t.Fatalf("reported %+v with no incident declared", in)
	case <-time.After(300 * time.Millisecond):
	}
}

func testWatchStops(t *testing.T, s leases.Store) {
	w := s.(leases.IncidentWatcher)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.WatchIncident(ctx, func(leases.Incident) {}, nil) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("WatchIncident after cancel returned %v, want context.Canceled", err)
		}
	case <-time.After(noticeWait):
		t.Fatal("WatchIncident did not return after its context was canceled")
	}
}
