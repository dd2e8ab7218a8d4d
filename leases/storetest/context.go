package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/credbroker/credbroker/leases"
)

var contextTests = []test{
	{"Canceled", testContextCanceled},
}

// A canceled context must stop a call with an error that says so, and a
// canceled RecordLeases must not half-happen.
func testContextCanceled(t *testing.T, s leases.Store) {
	must(t, s.PutIntent(t.Context(), newIntent("i1", "s1", at(0))), "PutIntent")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	if _, err := s.GetSession(ctx, "s1"); !errors.Is(err, context.Canceled) {
		t.Errorf("GetSession with canceled context: error = %v, want context.Canceled", err)
	}
	err := s.RecordLeases(ctx, "i1", []leases.Lease{newLease("vault/token/a", "s1", at(0))})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("RecordLeases with canceled context: error = %v, want context.Canceled", err)
	}
	wantIntents(t, s, "i1")
	wantLeases(t, s)
}
