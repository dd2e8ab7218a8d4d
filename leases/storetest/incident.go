package storetest

import (
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var incidentTests = []test{
	{"Lifecycle", testIncidentLifecycle},
	{"ZeroTime", testIncidentZeroTime},
}

func testIncidentLifecycle(t *testing.T, s leases.Store) {
	ctx := t.Context()
	wantNone := func(when string) {
		t.Helper()
		in, ok, err := s.GetIncident(ctx)
		must(t, err, "GetIncident %s", when)
		if ok {
			t.Errorf("GetIncident %s = %+v, ok=true; want ok=false", when, in)
		}
	}
	wantIncident := func(when string, want leases.Incident) {
		t.Helper()
		got, ok, err := s.GetIncident(ctx)
		must(t, err, "GetIncident %s", when)
		if !ok {
			t.Fatalf("GetIncident %s: ok=false, want %+v", when, want)
		}
		check(t, "GetIncident "+when, got, want, normIncident)
	}

	wantNone("on a new store")
	must(t, s.ClearIncident(ctx), "ClearIncident with no incident")
	wantNone("after clearing nothing")

	first := leases.Incident{Reason: "token leaked in CI log", DeclaredAt: at(0), CallerUID: 1000}
	must(t, s.SetIncident(ctx, first), "SetIncident")
	wantIncident("after set", first)

	second := leases.Incident{Reason: "second", DeclaredAt: at(time.Hour), CallerUID: 0}
	must(t, s.SetIncident(ctx, second), "SetIncident (replace)")
	wantIncident("after replace", second)

	must(t, s.ClearIncident(ctx), "ClearIncident")
	wantNone("after clear")
	must(t, s.ClearIncident(ctx), "ClearIncident (again)")
	wantNone("after clearing twice")

	must(t, s.SetIncident(ctx, first), "SetIncident after clear")
	wantIncident("after set again", first)
}

func testIncidentZeroTime(t *testing.T, s leases.Store) {
	ctx := t.Context()
	in := leases.Incident{Reason: "", CallerUID: -1}
	must(t, s.SetIncident(ctx, in), "SetIncident")
	got, ok, err := s.GetIncident(ctx)
	must(t, err, "GetIncident")
	if !ok {
		t.Fatal("GetIncident: ok=false after SetIncident with zero fields")
	}
	check(t, "GetIncident", got, in, normIncident)
}
