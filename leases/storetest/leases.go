package storetest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var leaseTests = []test{
	{"RoundTrip", testLeaseRoundTrip},
	{"GetUnknown", testLeaseGetUnknown},
	{"Update", testLeaseUpdate},
	{"UpdateUnknown", testLeaseUpdateUnknown},
	{"Delete", testLeaseDelete},
	{"ListOrder", testLeaseListOrder},
	{"ListBySession", testLeaseListBySession},
	{"ListByState", testLeaseListByState},
	{"DataIsCopied", testLeaseDataIsCopied},
}

func testLeaseRoundTrip(t *testing.T, s leases.Store) {
	pending := newLease("aws/iam-user/AKIAEXAMPLE", "s1", at(0))
	pending.Provider, pending.Kind, pending.ExternalID = "aws", "iam-user", "AKIAEXAMPLE"
	pending.Renewable = false
	pending.State = leases.LeaseRevokePending
	pending.Attempts = 3
	pending.LastError = "vault: revoke accessor x: 503 \"unavailable\""
	pending.NextAttempt = at(5 * time.Minute)

	cases := []struct {
		name string
		l    leases.Lease
	}{
		{"active", newLease("vault/token/acc1", "s1", at(0))},
		{"revoke pending", pending},
		{"zero times nil data", leases.Lease{ID: "vault/token/zero", SessionID: "s1", State: leases.LeaseActive}},
		{"empty data", func() leases.Lease {
			l := newLease("vault/token/empty", "s1", at(time.Second))
			l.Data = map[string]string{}
			return l
		}()},
		{"odd data", func() leases.Lease {
			l := newLease("kube/sa/odd", "s1", at(time.Second))
			l.Data = map[string]string{"": "", "k\"ey": "v\tal\n", "ü": strings.Repeat("x", 4096)}
			return l
		}()},
		{"broker session", newLease("vault/token/epoch", leases.BrokerSessionID, at(0))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			must(t, s.RecordLeases(ctx, "", []leases.Lease{tc.l}), "RecordLeases")
			got, err := s.GetLease(ctx, tc.l.ID)
			must(t, err, "GetLease(%q)", tc.l.ID)
			check(t, "GetLease", got, tc.l, normLease)
			if tc.l.NextAttempt.IsZero() && !got.NextAttempt.IsZero() {
				t.Errorf("zero NextAttempt read back as %v", got.NextAttempt)
			}
		})
	}
}

func testLeaseGetUnknown(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.RecordLeases(ctx, "", []leases.Lease{newLease("vault/token/a", "s1", at(0))}), "RecordLeases")
	for _, id := range []string{"vault/token/b", "vault/token", ""} {
		if _, err := s.GetLease(ctx, id); !errors.Is(err, leases.ErrNotFound) {
			t.Errorf("GetLease(%q) error = %v, want ErrNotFound", id, err)
		}
	}
}

func testLeaseUpdate(t *testing.T, s leases.Store) {
	ctx := t.Context()
	orig := newLease("vault/token/a", "s1", at(0))
	other := newLease("vault/token/b", "s1", at(time.Second))
	must(t, s.RecordLeases(ctx, "", []leases.Lease{orig, other}), "RecordLeases")

	upd := leases.Lease{
		ID:          orig.ID,
		SessionID:   "s2",
		Provider:    "vault2",
		Kind:        "secret",
		ExternalID:  "lease/xyz",
		IssuedAt:    at(time.Minute),
		ExpiresAt:   time.Time{},
		Renewable:   false,
		State:       leases.LeaseRevokePending,
		Attempts:    1,
		LastError:   "timeout",
		NextAttempt: at(2 * time.Minute),
		Data:        map[string]string{"only": "this"},
	}
	must(t, s.UpdateLease(ctx, upd), "UpdateLease")
	got, err := s.GetLease(ctx, orig.ID)
	must(t, err, "GetLease")
	check(t, "updated lease", got, upd, normLease)

	// Back to zero values, including the data map.
	upd.Attempts, upd.LastError, upd.NextAttempt, upd.Data = 0, "", time.Time{}, nil
	must(t, s.UpdateLease(ctx, upd), "UpdateLease (clear)")
	got, err = s.GetLease(ctx, orig.ID)
	must(t, err, "GetLease")
	check(t, "cleared lease", got, upd, normLease)

	got, err = s.GetLease(ctx, other.ID)
	must(t, err, "GetLease(other)")
	check(t, "untouched lease", got, other, normLease)
}

func testLeaseUpdateUnknown(t *testing.T, s leases.Store) {
	ctx := t.Context()
	l := newLease("vault/token/nope", "s1", at(0))
	if err := s.UpdateLease(ctx, l); !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("UpdateLease(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetLease(ctx, l.ID); !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("UpdateLease(unknown) created the lease (GetLease error = %v)", err)
	}
}

func testLeaseDelete(t *testing.T, s leases.Store) {
	ctx := t.Context()
	keep := newLease("vault/token/keep", "s1", at(0))
	gone := newLease("vault/token/gone", "s1", at(time.Second))
	must(t, s.RecordLeases(ctx, "", []leases.Lease{keep, gone}), "RecordLeases")

	must(t, s.DeleteLease(ctx, gone.ID), "DeleteLease")
	must(t, s.DeleteLease(ctx, gone.ID), "DeleteLease (again)")
	must(t, s.DeleteLease(ctx, "vault/token/never"), "DeleteLease (missing)")

	if _, err := s.GetLease(ctx, gone.ID); !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("GetLease(deleted) error = %v, want ErrNotFound", err)
	}
	got, err := s.ListLeases(ctx, "")
	must(t, err, "ListLeases")
	checkAll(t, "leases after delete", got, []leases.Lease{keep}, normLease)
}

func testLeaseListOrder(t *testing.T, s leases.Store) {
	ctx := t.Context()
	if got, err := s.ListLeases(ctx, ""); err != nil || len(got) != 0 {
		t.Fatalf("ListLeases on empty store = %q, %v; want none", ids(got, leaseID), err)
	}
	// Recorded out of order, over two calls; "b" and "a" tie on IssuedAt
	// and must come out by ID.
	l := func(id string, d time.Duration) leases.Lease { return newLease(id, "s1", at(d)) }
	must(t, s.RecordLeases(ctx, "", []leases.Lease{l("p/k/c", 2*time.Second), l("p/k/b", time.Second)}),
		"RecordLeases")
	must(t, s.RecordLeases(ctx, "", []leases.Lease{l("p/k/d", 0), l("p/k/a", time.Second)}),
		"RecordLeases")
	want := []leases.Lease{l("p/k/d", 0), l("p/k/a", time.Second), l("p/k/b", time.Second), l("p/k/c", 2*time.Second)}
	got, err := s.ListLeases(ctx, "s1")
	must(t, err, "ListLeases(s1)")
	checkAll(t, "ListLeases ordered by IssuedAt, ID", got, want, normLease)
}

func testLeaseListBySession(t *testing.T, s leases.Store) {
	ctx := t.Context()
	a1 := newLease("vault/token/a1", "a", at(3*time.Second))
	a2 := newLease("vault/token/a2", "a", at(0))
	b1 := newLease("vault/token/b1", "b", at(time.Second))
	br := newLease("vault/token/epoch", leases.BrokerSessionID, at(2*time.Second))
	must(t, s.RecordLeases(ctx, "", []leases.Lease{a1, a2, b1, br}), "RecordLeases")

	cases := []struct {
		session string
		want    []leases.Lease
	}{
		{"a", []leases.Lease{a2, a1}},
		{"b", []leases.Lease{b1}},
		{leases.BrokerSessionID, []leases.Lease{br}},
		{"", []leases.Lease{a2, b1, br, a1}},
		{"unknown", nil},
	}
	for _, tc := range cases {
		t.Run("session="+tc.session, func(t *testing.T) {
			got, err := s.ListLeases(t.Context(), tc.session)
			must(t, err, "ListLeases(%q)", tc.session)
			checkAll(t, "ListLeases("+tc.session+")", got, tc.want, normLease)
		})
	}
}

func testLeaseListByState(t *testing.T, s leases.Store) {
	ctx := t.Context()
	mk := func(id, session string, st leases.LeaseState) leases.Lease {
		l := newLease(id, session, at(time.Duration(len(id))*time.Second))
		l.State = st
		return l
	}
	all := []leases.Lease{
		mk("p/k/1", "s1", leases.LeaseActive),
		mk("p/k/22", "s1", leases.LeaseRevokePending),
		mk("p/k/333", "s2", leases.LeaseRevokePending),
		mk("p/k/4444", leases.BrokerSessionID, leases.LeaseActive),
	}
	must(t, s.RecordLeases(ctx, "", all), "RecordLeases")

	cases := []struct {
		st   leases.LeaseState
		want []string
	}{
		{leases.LeaseActive, []string{"p/k/1", "p/k/4444"}},
		{leases.LeaseRevokePending, []string{"p/k/22", "p/k/333"}},
		{"nope", nil},
	}
	for _, tc := range cases {
		t.Run(string(tc.st), func(t *testing.T) {
			got, err := s.ListLeasesByState(t.Context(), tc.st)
			must(t, err, "ListLeasesByState(%q)", tc.st)
			// The contract gives no order here: compare as sets.
			slices.SortFunc(got, func(a, b leases.Lease) int { return strings.Compare(a.ID, b.ID) })
			var want []leases.Lease
			for _, l := range all {
				if slices.Contains(tc.want, l.ID) {
					want = append(want, l)
				}
			}
			checkAll(t, "ListLeasesByState("+string(tc.st)+")", got, want, normLease)
		})
	}
}

func testLeaseDataIsCopied(t *testing.T, s leases.Store) {
	ctx := t.Context()
	l := newLease("vault/token/a", "s1", at(0))
	l.Data = map[string]string{"k": "v"}
	must(t, s.RecordLeases(ctx, "", []leases.Lease{l}), "RecordLeases")
	l.Data["k"] = "changed by caller"

	got, err := s.GetLease(ctx, l.ID)
	must(t, err, "GetLease")
	if got.Data["k"] != "v" {
		t.Fatalf("store kept the caller's map: Data[k] = %q, want %q", got.Data["k"], "v")
	}
	got.Data["k"] = "changed by reader"
	got, err = s.GetLease(ctx, l.ID)
	must(t, err, "GetLease")
	if got.Data["k"] != "v" {
		t.Errorf("store shares its map with readers: Data[k] = %q, want %q", got.Data["k"], "v")
	}
}
