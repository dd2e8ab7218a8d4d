package storetest

import (
	"slices"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// fleetTests cover what brokers sharing a store rely on: sessions belong
// to a host, and each host finds its own leases.
var fleetTests = []test{
	{"HostRoundTrip", testHostRoundTrip},
	{"UpdateKeepsHost", testUpdateKeepsHost},
	{"ListByHost", testListByHost},
	{"FindLeases", testFindLeases},
	{"BrokerSession", testBrokerSession},
}

func hostSession(id, host string, created time.Time) leases.Session {
	s := newSession(id, created)
	s.HostID = host
	return s
}

func testHostRoundTrip(t *testing.T, s leases.Store) {
	ctx := t.Context()
	for _, sess := range []leases.Session{hostSession("s-a", "runner-a.example", at(0)), hostSession("s-none", "", at(time.Second))} {
		must(t, s.CreateSession(ctx, sess), "CreateSession(%q)", sess.ID)
		got, err := s.GetSession(ctx, sess.ID)
		must(t, err, "GetSession(%q)", sess.ID)
		check(t, "GetSession", got, sess, normSession)
	}
}

// A session's owner never changes, whatever an update carries.
func testUpdateKeepsHost(t *testing.T, s leases.Store) {
	ctx := t.Context()
	orig := hostSession("s1", "runner-a", at(0))
	must(t, s.CreateSession(ctx, orig), "CreateSession")
	for _, host := range []string{"", "runner-b"} {
		upd := hostSession("s1", host, at(0))
		upd.State, upd.EndReason = leases.SessionEnding, "ended from "+host
		must(t, s.UpdateSession(ctx, upd), "UpdateSession with host %q", host)
		got, err := s.GetSession(ctx, "s1")
		must(t, err, "GetSession")
		upd.HostID = "runner-a"
		check(t, "session after UpdateSession with host "+host, got, upd, normSession)
	}
}

func testListByHost(t *testing.T, s leases.Store) {
	ctx := t.Context()
	mk := func(id, host string, i int, st leases.SessionState) {
		sess := hostSession(id, host, at(time.Duration(i)*time.Second))
		sess.State = st
		must(t, s.CreateSession(ctx, sess), "CreateSession(%q)", id)
	}
	mk("1-a", "a", 1, leases.SessionActive)
	mk("2-b", "b", 2, leases.SessionActive)
	mk("3-a-ended", "a", 3, leases.SessionEnded)
	mk("4-none", "", 4, leases.SessionActive)
	mk("5-ab", "ab", 5, leases.SessionActive)
	cases := []struct {
		f    leases.SessionFilter
		want []string
	}{
		{leases.SessionFilter{HostID: "a"}, []string{"1-a", "3-a-ended"}},
		{leases.SessionFilter{HostID: "a", States: []leases.SessionState{leases.SessionActive}}, []string{"1-a"}},
		{leases.SessionFilter{HostID: "b"}, []string{"2-b"}},
		{leases.SessionFilter{HostID: "c"}, nil},
		{leases.SessionFilter{}, []string{"1-a", "2-b", "3-a-ended", "4-none", "5-ab"}},
	}
	for _, tc := range cases {
		got, err := s.ListSessions(ctx, tc.f)
		must(t, err, "ListSessions(%+v)", tc.f)
		if g := ids(got, sessionID); !slices.Equal(g, tc.want) {
			t.Errorf("ListSessions(%+v) = %q, want %q", tc.f, g, tc.want)
		}
	}
}

func testFindLeases(t *testing.T, s leases.Store) {
	ctx := t.Context()
	must(t, s.CreateSession(ctx, hostSession("s-a", "a", at(0))), "CreateSession")
	must(t, s.CreateSession(ctx, hostSession("s-b", "b", at(0))), "CreateSession")
	must(t, s.CreateSession(ctx, hostSession("s-single", "", at(0))), "CreateSession")
	i := 0
	mk := func(id, session string, st leases.LeaseState) {
		i++
		l := newLease(id, session, at(time.Duration(i)*time.Second))
		l.State = st
		must(t, s.RecordLeases(ctx, "", []leases.Lease{l}), "RecordLeases(%q)", id)
	}
	mk("01-a", "s-a", leases.LeaseActive)
	mk("02-a-pending", "s-a", leases.LeaseRevokePending)
	mk("03-b", "s-b", leases.LeaseActive)
	mk("04-single", "s-single", leases.LeaseActive)
	mk("05-epoch", leases.BrokerSessionID, leases.LeaseActive)
	mk("06-epoch-a", leases.BrokerSession("a"), leases.LeaseRevokePending)
	mk("07-epoch-b", leases.BrokerSession("b"), leases.LeaseActive)
	mk("08-lookalike", "_brokerX/a", leases.LeaseActive)   // not a broker session
	mk("09-lookalike", "x_broker/a", leases.LeaseActive)   // nor this
	mk("10-unknown-session", "s-gone", leases.LeaseActive) // no session row
	mk("11-epoch-ab", leases.BrokerSession("ab"), leases.LeaseActive)
	all := []string{"01-a", "02-a-pending", "03-b", "04-single", "05-epoch", "06-epoch-a", "07-epoch-b",
		"08-lookalike", "09-lookalike", "10-unknown-session", "11-epoch-ab"}
	cases := []struct {
		name string
		f    leases.LeaseFilter
		want []string
	}{
		{"zero filter", leases.LeaseFilter{}, all},
		{"state", leases.LeaseFilter{State: leases.LeaseRevokePending}, []string{"02-a-pending", "06-epoch-a"}},
		{"host a", leases.LeaseFilter{HostID: "a"}, []string{"01-a", "02-a-pending", "06-epoch-a"}},
		{"host b pending", leases.LeaseFilter{HostID: "b", State: leases.LeaseRevokePending}, nil},
		{"host a pending", leases.LeaseFilter{HostID: "a", State: leases.LeaseRevokePending}, []string{"02-a-pending", "06-epoch-a"}},
		{"unknown host", leases.LeaseFilter{HostID: "c"}, nil},
		{"broker only", leases.LeaseFilter{BrokerOnly: true}, []string{"05-epoch", "06-epoch-a", "07-epoch-b", "11-epoch-ab"}},
		{"broker only pending", leases.LeaseFilter{BrokerOnly: true, State: leases.LeaseRevokePending}, []string{"06-epoch-a"}},
		{"broker only of host b", leases.LeaseFilter{BrokerOnly: true, HostID: "b"}, []string{"07-epoch-b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.FindLeases(ctx, tc.f)
			must(t, err, "FindLeases(%+v)", tc.f)
			if g := ids(got, leaseID); !slices.Equal(g, tc.want) {
				t.Errorf("FindLeases(%+v) = %q, want %q", tc.f, g, tc.want)
			}
		})
	}
	// Every field reads back.
	got, err := s.FindLeases(ctx, leases.LeaseFilter{HostID: "b"})
	must(t, err, "FindLeases")
	want, err := s.ListLeases(ctx, "s-b")
	must(t, err, "ListLeases")
	checkAll(t, "FindLeases(host b) without the epoch", got[:1], want, normLease)
}

func testBrokerSession(t *testing.T, _ leases.Store) {
	for _, tc := range []struct {
		host, id string
	}{{"", "_broker"}, {"runner-7", "_broker/runner-7"}} {
		id := leases.BrokerSession(tc.host)
		if id != tc.id {
			t.Errorf("BrokerSession(%q) = %q, want %q", tc.host, id, tc.id)
		}
		if host, ok := leases.BrokerSessionHost(id); !ok || host != tc.host || !leases.IsBrokerSession(id) {
			t.Errorf("BrokerSessionHost(%q) = %q, %v; IsBrokerSession = %v", id, host, ok, leases.IsBrokerSession(id))
		}
	}
	for _, id := range []string{"s-1", "_brokerX", "x_broker/a", ""} {
		if leases.IsBrokerSession(id) {
			t.Errorf("IsBrokerSession(%q) = true", id)
		}
	}
}
