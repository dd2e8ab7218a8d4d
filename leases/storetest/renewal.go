package storetest

import (
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// renewalTests cover leases.RenewalMarker.
var renewalTests = []test{
	{"MarkRenewal", testMarkRenewal},
}

// testMarkRenewal: only active leases are marked, nothing else of a lease
// changes, and missing ids are skipped.
func testMarkRenewal(t *testing.T, s leases.Store) {
	ctx := t.Context()
	active := newLease("aws/sts/s1", "s1", at(0))
	pending := newLease("aws/sts/s2", "s2", at(time.Second))
	pending.State, pending.NextAttempt = leases.LeaseRevokePending, at(time.Hour)
	must(t, s.RecordLeases(ctx, "", []leases.Lease{active, pending}), "RecordLeases")
	mark := at(6 * time.Minute)
	n, err := s.(leases.RenewalMarker).MarkRenewal(ctx, []string{active.ID, pending.ID, "aws/sts/missing"}, mark)
	must(t, err, "MarkRenewal")
	if n != 1 {
		t.Errorf("MarkRenewal marked %d leases, want 1 (only the active one)", n)
	}
	got, err := s.GetLease(ctx, active.ID)
	must(t, err, "GetLease")
	want := active
	want.NextAttempt = mark
	check(t, "marked lease", got, want, normLease)
	got, err = s.GetLease(ctx, pending.ID)
	must(t, err, "GetLease")
	check(t, "pending lease", got, pending, normLease)
}
