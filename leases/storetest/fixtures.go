package storetest

import (
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// base is the suite's reference instant. It has microsecond precision (the
// finest PostgreSQL keeps) and a non-UTC zone, so a store must keep the
// instant rather than the location.
var base = time.Date(2025, 3, 14, 15, 9, 26, 535897000, time.FixedZone("UTC+1", 3600))

// at returns base plus d.
func at(d time.Duration) time.Time { return base.Add(d) }

// newSession returns a session with every field set.
func newSession(id string, created time.Time) leases.Session {
	return leases.Session{
		ID:        id,
		Role:      "deploy",
		UID:       1000,
		CallerUID: 1001,
		Dir:       "/run/credbroker/sessions/" + id,
		CreatedAt: created,
		ExpiresAt: created.Add(time.Hour),
		State:     leases.SessionActive,
	}
}

// newLease returns an active lease with every field set.
func newLease(id, sessionID string, issued time.Time) leases.Lease {
	return leases.Lease{
		ID:         id,
		SessionID:  sessionID,
		Provider:   "vault",
		Kind:       "token",
		ExternalID: "accessor-" + id,
		IssuedAt:   issued,
		ExpiresAt:  issued.Add(30 * time.Minute),
		Renewable:  true,
		State:      leases.LeaseActive,
		Data:       map[string]string{"path": "auth/token/create", "role": "deploy"},
	}
}

// newIntent returns an intent with every field set.
func newIntent(id, sessionID string, created time.Time) leases.Intent {
	return leases.Intent{
		ID:        id,
		SessionID: sessionID,
		Provider:  "awssts",
		CreatedAt: created,
		Data:      map[string]string{"role_arn": "arn:aws:iam::123456789012:role/deploy"},
	}
}

// normTime makes equal instants compare equal with reflect.DeepEqual.
func normTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

// normData treats a nil and an empty map as the same: the contract does not
// tell them apart.
func normData(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return m
}

func normSession(s leases.Session) leases.Session {
	s.CreatedAt = normTime(s.CreatedAt)
	s.ExpiresAt = normTime(s.ExpiresAt)
	s.EndedAt = normTime(s.EndedAt)
	return s
}

func normLease(l leases.Lease) leases.Lease {
	l.IssuedAt = normTime(l.IssuedAt)
	l.ExpiresAt = normTime(l.ExpiresAt)
	l.NextAttempt = normTime(l.NextAttempt)
	l.Data = normData(l.Data)
	return l
}

func normIntent(in leases.Intent) leases.Intent {
	in.CreatedAt = normTime(in.CreatedAt)
	in.Data = normData(in.Data)
	return in
}

func normIncident(in leases.Incident) leases.Incident {
	in.DeclaredAt = normTime(in.DeclaredAt)
	return in
}

// mapSlice applies f to every element of xs.
func mapSlice[T any](xs []T, f func(T) T) []T {
	out := make([]T, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}

// check reports a difference between got and want after normalising both.
func check[T any](t *testing.T, what string, got, want T, norm func(T) T) {
	t.Helper()
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got  %+v\n want %+v", what, g, w)
	}
}

// checkAll is check for slices, in order.
func checkAll[T any](t *testing.T, what string, got, want []T, norm func(T) T) {
	t.Helper()
	g, w := mapSlice(got, norm), mapSlice(want, norm)
	if len(g) != len(w) {
		t.Errorf("%s: got %d records, want %d:\n got  %+v\n want %+v", what, len(g), len(w), g, w)
		return
	}
	for i := range g {
		if !reflect.DeepEqual(g[i], w[i]) {
			t.Errorf("%s[%d]:\n got  %+v\n want %+v", what, i, g[i], w[i])
		}
	}
}

// ids returns the ID field of each record, for short failure messages.
func ids[T any](xs []T, id func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = id(x)
	}
	return out
}

func sessionID(s leases.Session) string { return s.ID }
func leaseID(l leases.Lease) string     { return l.ID }
func intentID(in leases.Intent) string  { return in.ID }

// must fails the test at once if err is not nil.
func must(t *testing.T, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(format, args...), err)
	}
}
