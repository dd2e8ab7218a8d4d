package storetest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var sessionTests = []test{
	{"RoundTrip", testSessionRoundTrip},
	{"CreateDuplicate", testSessionCreateDuplicate},
	{"GetUnknown", testSessionGetUnknown},
	{"Update", testSessionUpdate},
	{"UpdateUnknown", testSessionUpdateUnknown},
	{"ListOrder", testSessionListOrder},
	{"ListFilter", testSessionListFilter},
	{"Activate", testSessionActivate},
}

func testSessionRoundTrip(t *testing.T, s leases.Store) {
	ended := newSession("s-ended", at(0))
	ended.UID = -1
	ended.State = leases.SessionEnded
	ended.EndReason = "revoked by uid 0: \"compromised\" ✓"
	ended.EndedAt = at(90 * time.Minute)

	cases := []struct {
		name string
		sess leases.Session
	}{
		{"full", ended},
		{"active", newSession("s-active", at(time.Second))},
		{"zero times", leases.Session{ID: "s-zero", Role: "r", State: leases.SessionActive}},
		{"path id", newSession("team/a b/ü", at(2*time.Second))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			must(t, s.CreateSession(ctx, tc.sess), "CreateSession(%q)", tc.sess.ID)
			got, err := s.GetSession(ctx, tc.sess.ID)
			must(t, err, "GetSession(%q)", tc.sess.ID)
			check(t, "GetSession", got, tc.sess, normSession)
			if tc.sess.ExpiresAt.IsZero() && !got.ExpiresAt.IsZero() {
				t.Errorf("zero ExpiresAt read back as %v", got.ExpiresAt)
			}
		})
	}
}

func testSessionCreateDuplicate(t *testing.T, s leases.Store) {
	ctx := t.Context()
	orig := newSession("s1", at(0))
	must(t, s.CreateSession(ctx, orig), "CreateSession")
	dup := newSession("s1", at(time.Hour))
	dup.Role = "other"
	if err := s.CreateSession(ctx, dup); err == nil {
		t.Fatal("CreateSession with an existing id succeeded, want an error")
	}
	got, err := s.GetSession(ctx, "s1")
	must(t, err, "GetSession")
	check(t, "session after failed duplicate create", got, orig, normSession)
}

func testSessionGetUnknown(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.CreateSession(ctx, newSession("s1", at(0))), "CreateSession")
	if _, err := s.GetSession(ctx, "nope"); !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("GetSession(unknown) error = %v, want ErrNotFound", err)
	}
}

func testSessionUpdate(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.CreateSession(ctx, newSession("s1", at(0))), "CreateSession")
	other := newSession("s2", at(time.Second))
	must(t, s.CreateSession(ctx, other), "CreateSession")

	// Every field changes, including back to zero values.
	upd := leases.Session{
		ID:        "s1",
		Role:      "admin",
		UID:       -1,
		CallerUID: 0,
		Dir:       "/elsewhere",
		CreatedAt: at(time.Minute),
		ExpiresAt: time.Time{},
		State:     leases.SessionEnding,
		EndReason: "ttl",
		EndedAt:   at(2 * time.Hour),
	}
	must(t, s.UpdateSession(ctx, upd), "UpdateSession")
	got, err := s.GetSession(ctx, "s1")
	must(t, err, "GetSession")
	check(t, "updated session", got, upd, normSession)

	got, err = s.GetSession(ctx, "s2")
	must(t, err, "GetSession(s2)")
	check(t, "untouched session", got, other, normSession)
}

func testSessionUpdateUnknown(t *testing.T, s leases.Store) {
	ctx := t.Context()
	err := s.UpdateSession(ctx, newSession("nope", at(0)))
	if !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("UpdateSession(unknown) error = %v, want ErrNotFound", err)
	}
	if _, err := s.GetSession(ctx, "nope"); !errors.Is(err, leases.ErrNotFound) {
		t.Errorf("UpdateSession(unknown) created the session (GetSession error = %v)", err)
	}
}

func testSessionListOrder(t *testing.T, s leases.Store) {
	ctx := t.Context()
	if got, err := s.ListSessions(ctx, leases.SessionFilter{}); err != nil || len(got) != 0 {
		t.Fatalf("ListSessions on empty store = %v, %v; want none", ids(got, sessionID), err)
	}
	// Inserted out of order, and with ids that sort the other way.
	var want []leases.Session
	for i, id := range []string{"c", "a", "d", "b"} {
		sess := newSession(id, at(time.Duration(3-i)*time.Minute))
		must(t, s.CreateSession(ctx, sess), "CreateSession(%q)", id)
		want = append(want, sess)
	}
	slices.SortFunc(want, func(a, b leases.Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	got, err := s.ListSessions(ctx, leases.SessionFilter{})
	must(t, err, "ListSessions")
	checkAll(t, "ListSessions ordered by CreatedAt", got, want, normSession)
}

func testSessionListFilter(t *testing.T, s leases.Store) {
	ctx := t.Context()
	cutoff := at(time.Hour)
	mk := func(id string, created time.Time, expires time.Time, st leases.SessionState) {
		sess := newSession(id, created)
		sess.ExpiresAt = expires
		sess.State = st
		must(t, s.CreateSession(ctx, sess), "CreateSession(%q)", id)
	}
	// Ids are in CreatedAt order.
	mk("1-active-expired", at(0), cutoff.Add(-time.Microsecond), leases.SessionActive)
	mk("2-active-at-cutoff", at(time.Second), cutoff, leases.SessionActive)
	mk("3-active-live", at(2*time.Second), cutoff.Add(time.Minute), leases.SessionActive)
	mk("4-ending-expired", at(3*time.Second), at(0), leases.SessionEnding)
	mk("5-ended-expired", at(4*time.Second), at(0), leases.SessionEnded)
	mk("6-active-no-expiry", at(5*time.Second), time.Time{}, leases.SessionActive)
	mk("7-starting", at(6*time.Second), cutoff.Add(time.Minute), leases.SessionStarting)

	all := []string{"1-active-expired", "2-active-at-cutoff", "3-active-live",
		"4-ending-expired", "5-ended-expired", "6-active-no-expiry", "7-starting"}
	cases := []struct {
		name string
		f    leases.SessionFilter
		want []string
	}{
		{"zero filter matches all", leases.SessionFilter{}, all},
		{"empty states match all", leases.SessionFilter{States: []leases.SessionState{}}, all},
		{"one state", leases.SessionFilter{States: []leases.SessionState{leases.SessionEnding}},
			[]string{"4-ending-expired"}},
		{"two states", leases.SessionFilter{States: []leases.SessionState{leases.SessionEnded, leases.SessionActive}},
			[]string{"1-active-expired", "2-active-at-cutoff", "3-active-live", "5-ended-expired", "6-active-no-expiry"}},
		{"starting", leases.SessionFilter{States: []leases.SessionState{leases.SessionStarting}},
			[]string{"7-starting"}},
		{"state without sessions", leases.SessionFilter{States: []leases.SessionState{"nope"}}, nil},
		// ExpiresAt must be strictly before the cutoff; the zero time is
		// before every cutoff, as time.Time.Before says.
		{"expired before", leases.SessionFilter{ExpiredBefore: cutoff},
			[]string{"1-active-expired", "4-ending-expired", "5-ended-expired", "6-active-no-expiry"}},
		{"states and expired before", leases.SessionFilter{
			States:        []leases.SessionState{leases.SessionActive, leases.SessionEnding},
			ExpiredBefore: cutoff,
		}, []string{"1-active-expired", "4-ending-expired", "6-active-no-expiry"}},
		{"expired before the first", leases.SessionFilter{ExpiredBefore: at(-time.Hour)},
			[]string{"6-active-no-expiry"}},
		// ExpiresAt must be strictly after; the zero time is after none.
		{"expires after", leases.SessionFilter{ExpiresAfter: cutoff},
			[]string{"3-active-live", "7-starting"}},
		{"ended states expiring after", leases.SessionFilter{
			States:       []leases.SessionState{leases.SessionEnding, leases.SessionEnded},
			ExpiresAfter: at(-time.Hour),
		}, []string{"4-ending-expired", "5-ended-expired"}},
		{"ended states expiring after the last", leases.SessionFilter{
			States:       []leases.SessionState{leases.SessionEnding, leases.SessionEnded},
			ExpiresAfter: at(0),
		}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.ListSessions(t.Context(), tc.f)
			must(t, err, "ListSessions(%+v)", tc.f)
			if g := ids(got, sessionID); !slices.Equal(g, tc.want) {
				t.Errorf("ListSessions(%+v) = %q, want %q", tc.f, g, tc.want)
			}
		})
	}
}

// testSessionActivate: ActivateSession turns only a starting session
// active, and leaves one that was ended meanwhile as it is.
func testSessionActivate(t *testing.T, s leases.Store) {
	ctx := t.Context()
	for _, st := range []leases.SessionState{leases.SessionStarting, leases.SessionActive, leases.SessionEnding, leases.SessionEnded} {
		sess := newSession("s-"+string(st), at(0))
		sess.State = st
		must(t, s.CreateSession(ctx, sess), "CreateSession(%s)", st)
	}
	cases := []struct {
		id      string
		wantErr error
		want    leases.SessionState
	}{
		{"s-starting", nil, leases.SessionActive},
		{"s-active", leases.ErrStateChanged, leases.SessionActive},
		{"s-ending", leases.ErrStateChanged, leases.SessionEnding},
		{"s-ended", leases.ErrStateChanged, leases.SessionEnded},
		{"s-unknown", leases.ErrNotFound, ""},
	}
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) {
			err := s.ActivateSession(t.Context(), tc.id)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("ActivateSession(%s) = %v, want %v", tc.id, err, tc.wantErr)
			}
			if tc.want == "" {
				return
			}
			got, err := s.GetSession(t.Context(), tc.id)
			must(t, err, "GetSession(%s)", tc.id)
			if got.State != tc.want {
				t.Errorf("%s after ActivateSession: %s, want %s", tc.id, got.State, tc.want)
			}
		})
	}
}
