package broker_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
)

// revoke --all on one broker: the lock is in the shared store, every other
// broker hears of it at once and wipes its own dirs; one provider-wide
// revocation (every host's Vault epoch) makes every session token invalid.
func TestFleetRevokeAllReachesEveryBroker(t *testing.T) {
	f := newFleet(t, "a", "b", "c")
	ctx := context.Background()
	type sess struct {
		n   *node
		si  broker.SessionInfo
		tok string
	}
	var all []sess
	for _, h := range []string{"a", "b", "c"} {
		n := f.nodes[h]
		n.watch(t)
		for range 2 {
			si, tok := f.start(n)
			all = append(all, sess{n, si, tok})
		}
	}
	// Each broker lists its own sessions; the fleet view lists them all.
	b := f.nodes["b"]
	if own, err := b.b.ListSessions(ctx, false); err != nil || len(own) != 2 {
		t.Fatalf("b lists %d sessions (%v), want its 2", len(own), err)
	}
	if fleet, err := b.b.ListSessionsWith(ctx, broker.SessionQuery{AllHosts: true}); err != nil || len(fleet) != 6 {
		t.Fatalf("b lists %d sessions of the fleet (%v), want 6", len(fleet), err)
	}

	a := f.nodes["a"]
	start := time.Now()
	rep, err := a.b.RevokeAll(ctx, f.h.caller, "fleet drill")
	if err != nil {
		t.Fatalf("revoke --all on a: %v (%+v)", err, rep)
	}
	if rep.Sessions != 6 || rep.LocalSessions != 2 {
		t.Errorf("report: %d sessions, %d local; want 6 and 2", rep.Sessions, rep.LocalSessions)
	}
	waitFor(t, 5*time.Second, "every session dir of every broker gone", func() bool {
		for _, s := range all {
			if !dirGone(s.si.Dir) {
				return false
			}
		}
		return true
	})
	t.Logf("every dir gone %v after revoke --all started (a's servers: %v)", time.Since(start), rep.RevokedIn)
	for _, s := range all {
		if f.h.tokenValid(s.tok) {
			t.Errorf("token of %s (host %s) still valid", s.si.ID, s.n.host)
		}
	}
	for _, s := range all {
		waitFor(t, 5*time.Second, "session "+s.si.ID+" ended in the store", func() bool {
			return f.state(s.n, s.si.ID) == leases.SessionEnded
		})
	}
	// Provider-wide revocation ran once, on the broker that was asked.
	if !a.auditHas(t, broker.EvProviderRevoke) {
		t.Error("a's audit log has no provider.revoke_all")
	}
	for _, h := range []string{"b", "c"} {
		if f.nodes[h].auditHas(t, broker.EvProviderRevoke) {
			t.Errorf("%s ran a provider-wide revocation too", h)
		}
	}
	_, err = b.b.StartSession(ctx, f.h.caller, broker.StartRequest{Role: "agent-readonly"})
	if !errors.Is(err, broker.ErrIncident) {
		t.Errorf("start on b during the incident: %v, want ErrIncident", err)
	}
}

// Each broker's loops and crash recovery touch only what it owns: another
// host's sessions (whose dirs are not here), its intents (it may be minting
// right now) and its epoch records.
func TestFleetBrokersTouchOnlyTheirOwn(t *testing.T) {
	f := newFleet(t, "a", "b")
	ctx := context.Background()
	a, b := f.nodes["a"], f.nodes["b"]
	siA, _ := f.start(a)
	siB, tokB := f.start(b)
	// b is in the middle of a start: its intent is committed.
	if err := b.st.PutIntent(ctx, leases.Intent{ID: siB.ID + "/later", SessionID: siB.ID, Provider: "vault", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// a restarts (reconciler) and later runs its loop past every TTL and
	// past its epoch's expiry.
	if err := a.b.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile on a: %v", err)
	}
	a.offset.Store(int64(48 * time.Hour))
	a.b.Tick(ctx)

	if got := f.state(a, siA.ID); got != leases.SessionEnded {
		t.Errorf("a's own expired session is %s, want ended", got)
	}
	if got := f.state(a, siB.ID); got != leases.SessionActive {
		t.Errorf("b's session is %s after a's reconcile and reaper, want active", got)
	}
	if dirGone(siB.Dir) || !f.h.tokenValid(tokB) {
		t.Error("a's loops took b's session dir or token")
	}
	intents, err := a.st.ListIntents(ctx)
	if err != nil || len(intents) != 1 {
		t.Errorf("intents after a's reconcile: %v, %v; want b's one left alone", intents, err)
	}
	epochsB, err := a.st.ListLeases(ctx, leases.BrokerSession("b"))
	if err != nil || len(epochsB) != 1 {
		t.Errorf("b's epoch records after a's reaper: %v, %v; want 1", epochsB, err)
	}
	epochsA, err := a.st.ListLeases(ctx, leases.BrokerSession("a"))
	if err != nil || len(epochsA) != 0 {
		t.Errorf("a's expired epoch records: %v, %v; want none", epochsA, err)
	}
	// Crash recovery of a's epochs never finds b's.
	orphans, err := a.vp.FindOrphans(ctx, leases.BrokerSession("a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range orphans {
		for _, l := range epochsB {
			if o.ExternalID == l.ExternalID {
				t.Errorf("a's crash recovery would revoke b's epoch %s", l.ExternalID)
			}
		}
	}
}

// A broker that was down during the incident handles it when it starts,
// before it serves (Serve runs CheckIncident first); its tokens were
// already revoked by the provider-wide revocation of the broker that
// declared it.
func TestFleetBrokerDownDuringIncident(t *testing.T) {
	f := newFleet(t, "a", "c")
	ctx := context.Background()
	a, c := f.nodes["a"], f.nodes["c"] // c runs no watch: it is down
	siC, tokC := f.start(c)
	if _, err := a.b.RevokeAll(ctx, f.h.caller, "c is down"); err != nil {
		t.Fatal(err)
	}
	if f.h.tokenValid(tokC) {
		t.Error("c's token survived the provider-wide revocation")
	}
	time.Sleep(200 * time.Millisecond)
	if dirGone(siC.Dir) {
		t.Fatal("c's dir went while c was down: nobody should have touched it")
	}
	c.b.CheckIncident(ctx)
	if !dirGone(siC.Dir) {
		t.Error("c's dir survived its start-up incident check")
	}
}

// A broker cut off from the database misses the notice; its tokens are
// invalid anyway, and it wipes its dirs as soon as it is back.
func TestFleetBrokerCutOffDuringIncident(t *testing.T) {
	f := newFleet(t, "a", "b")
	ctx := context.Background()
	a, b := f.nodes["a"], f.nodes["b"]
	b.watch(t)
	siB, tokB := f.start(b)
	b.proxy.SetUp(false)
	if _, err := a.b.RevokeAll(ctx, f.h.caller, "b is cut off"); err != nil {
		t.Fatal(err)
	}
	if f.h.tokenValid(tokB) {
		t.Error("b's token survived while b was cut off")
	}
	time.Sleep(500 * time.Millisecond)
	if dirGone(siB.Dir) {
		t.Fatal("b's dir went while b could not hear of the incident")
	}
	b.proxy.SetUp(true)
	took := waitFor(t, 5*time.Second, "b's dir gone after it is back", func() bool { return dirGone(siB.Dir) })
	t.Logf("b wiped %v after it was reconnected", took)
}

// With PostgreSQL unreachable a start fails closed (nothing minted), an end
// still revokes at Vault and wipes the dir, and the store catches up once
// PostgreSQL is back.
func TestFleetStoreOutage(t *testing.T) {
	f := newFleet(t, "a")
	ctx := context.Background()
	a := f.nodes["a"]
	si, tok := f.start(a)
	before := f.h.sessionTokens()

	f.pg.Stop(t)
	_, err := a.b.StartSession(ctx, f.h.caller, broker.StartRequest{Role: "agent-readonly"})
	if !errors.Is(err, broker.ErrStoreUnavailable) {
		t.Fatalf("start with PostgreSQL down: %v, want ErrStoreUnavailable", err)
	}
	t.Logf("start refused: %v", err)
	if n := f.h.sessionTokens(); n != before {
		t.Errorf("%d session tokens in Vault after the refused start, want %d", n, before)
	}

	_, err = a.b.EndSession(ctx, f.h.caller, si.ID, "while the store is down")
	if !errors.Is(err, broker.ErrPending) || !errors.Is(err, broker.ErrStoreUnavailable) {
		t.Fatalf("end with PostgreSQL down: %v, want ErrPending and ErrStoreUnavailable", err)
	}
	t.Logf("end: %v", err)
	if f.h.tokenValid(tok) || !dirGone(si.Dir) {
		t.Fatal("end with PostgreSQL down did not revoke the token and wipe the dir")
	}

	f.pg.Start(t)
	a.b.Tick(ctx)
	if got := f.state(a, si.ID); got != leases.SessionEnded {
		t.Errorf("after PostgreSQL came back the session is %s, want ended", got)
	}
	if ls, err := a.st.ListLeases(ctx, si.ID); err != nil || len(ls) != 0 {
		t.Errorf("leases of the ended session: %v, %v; want none", ls, err)
	}
}

// revoke --all with PostgreSQL unreachable: this broker revokes what it
// holds at once and refuses sessions; once PostgreSQL is back the incident
// is recorded and broadcast, and the whole fleet is revoked.
func TestFleetRevokeAllDuringStoreOutage(t *testing.T) {
	f := newFleet(t, "a", "b")
	ctx := context.Background()
	a, b := f.nodes["a"], f.nodes["b"]
	b.watch(t)
	siA, tokA := f.start(a)
	siB, tokB := f.start(b)

	a.proxy.SetUp(false)
	_, err := a.b.RevokeAll(ctx, f.h.caller, "store down too")
	if !errors.Is(err, broker.ErrPending) || !errors.Is(err, broker.ErrStoreUnavailable) {
		t.Fatalf("revoke --all with the store unreachable: %v", err)
	}
	if f.h.tokenValid(tokA) || !dirGone(siA.Dir) {
		t.Error("a did not revoke and wipe its own session while the store was unreachable")
	}
	if _, err := a.b.StartSession(ctx, f.h.caller, broker.StartRequest{Role: "agent-readonly"}); !errors.Is(err, broker.ErrIncident) {
		t.Errorf("start on a after its offline revoke --all: %v, want ErrIncident", err)
	}
	a.proxy.SetUp(true)
	a.b.Tick(ctx) // records the backlog: the incident, then revoke --all again
	if _, ok, err := a.st.GetIncident(ctx); err != nil || !ok {
		t.Fatalf("incident in the store after it came back: %v, %v", ok, err)
	}
	waitFor(t, 5*time.Second, "b's dir gone", func() bool { return dirGone(siB.Dir) })
	if f.h.tokenValid(tokB) {
		t.Error("b's token is still valid")
	}
	if got := f.state(a, siA.ID); got != leases.SessionEnded {
		t.Errorf("a's session is %s in the store, want ended", got)
	}
}

// The fleet's status shows every host; a broker's own shows its own.
func TestFleetStatus(t *testing.T) {
	f := newFleet(t, "a", "b")
	ctx := context.Background()
	f.start(f.nodes["a"])
	f.start(f.nodes["b"])
	st, err := f.nodes["a"].b.StatusWith(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	hosts := map[string]int{}
	for _, s := range st.Sessions {
		hosts[s.Host]++
	}
	if st.Host != "a" || hosts["a"] != 1 || hosts["b"] != 1 {
		t.Errorf("fleet status from a: host %q, sessions by host %v", st.Host, hosts)
	}
	own, err := f.nodes["a"].b.Status(ctx)
	if err != nil || len(own.Sessions) != 1 || own.Sessions[0].Host != "a" {
		t.Errorf("a's own status: %+v, %v", own.Sessions, err)
	}
}

// The broker that declared the incident died before its provider-wide
// revocation: the others wipe their dirs at once, leave their leases to
// that revocation for incidentGrace, and then revoke what is left
// themselves.
func TestFleetDeclarerDiesBeforeRevoking(t *testing.T) {
	f := newFleet(t, "a", "b")
	ctx := context.Background()
	b := f.nodes["b"]
	si, tok := f.start(b)
	// a committed the lock, and nothing more.
	if err := f.nodes["a"].st.SetIncident(ctx, leases.Incident{Reason: "a died", DeclaredAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	b.b.CheckIncident(ctx)
	if !dirGone(si.Dir) {
		t.Fatal("b kept its dir")
	}
	if got := f.state(b, si.ID); got != leases.SessionEnding {
		t.Errorf("b's session is %s, want ending", got)
	}
	if !f.h.tokenValid(tok) {
		t.Fatal("b revoked lease by lease before the grace: the provider-wide revocation would have made that useless")
	}
	b.offset.Store(int64(time.Minute)) // the grace is over
	b.b.CheckIncident(ctx)
	if f.h.tokenValid(tok) {
		t.Error("b's token is still valid after the grace")
	}
	if got := f.state(b, si.ID); got != leases.SessionEnded {
		t.Errorf("b's session is %s, want ended", got)
	}
}

// A session ended from another broker is revoked there at once; its owner
// wipes the dir, on its host, at its next tick.
func TestFleetEndFromAnotherBroker(t *testing.T) {
	f := newFleet(t, "a", "b")
	ctx := context.Background()
	a, b := f.nodes["a"], f.nodes["b"]
	si, tok := f.start(b)
	if _, err := a.b.EndSession(ctx, f.h.caller, si.ID, "from a"); err != nil {
		t.Fatalf("end b's session on a: %v", err)
	}
	if f.h.tokenValid(tok) {
		t.Error("token still valid after the end on a")
	}
	if dirGone(si.Dir) {
		t.Fatal("a reached b's tmpfs?")
	}
	b.b.Tick(ctx)
	if !dirGone(si.Dir) {
		t.Error("b kept the dir of its ended session after a tick")
	}
}
