package broker_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/internal/toxitest"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// fault is one kind of trouble between the broker and a server.
type fault struct {
	name string
	// breaks: a session start must fail (else it must succeed, slowly).
	breaks bool
	// hold keeps the fault on at least this long after it was set.
	hold  time.Duration
	set   func(t testing.TB, p *toxitest.Proxy)
	clear func(t testing.TB, p *toxitest.Proxy)
}

// faultLatency is below every client timeout (30 s): starts must succeed.
const faultLatency = 2 * time.Second

// outage is how long the "down" fault keeps a server away.
const outage = time.Minute

// callLimit is how long a start or a revoke --all may take under any
// fault before the test calls it hung.
const callLimit = 150 * time.Second

var faults = []fault{
	{
		name: "latency",
		set:  func(t testing.TB, p *toxitest.Proxy) { p.AddToxic(t, toxitest.Latency("downstream", faultLatency)) },
		clear: func(t testing.TB, p *toxitest.Proxy) {
			p.RemoveToxic(t, toxitest.Latency("downstream", 0).Name)
		},
	},
	{
		// Both directions black-holed: requests never arrive, connections
		// never close.
		name: "blackhole", breaks: true,
		set: func(t testing.TB, p *toxitest.Proxy) {
			p.AddToxic(t, toxitest.Timeout("upstream"))
			p.AddToxic(t, toxitest.Timeout("downstream"))
		},
		clear: func(t testing.TB, p *toxitest.Proxy) {
			p.RemoveToxic(t, toxitest.Timeout("upstream").Name)
			p.RemoveToxic(t, toxitest.Timeout("downstream").Name)
		},
	},
	{
		// The server acts on each request, and its answer is replaced by a
		// TCP reset: the broker cannot know what was done.
		name: "reset", breaks: true,
		set:   func(t testing.TB, p *toxitest.Proxy) { p.AddToxic(t, toxitest.ResetPeer("downstream")) },
		clear: func(t testing.TB, p *toxitest.Proxy) { p.RemoveToxic(t, toxitest.ResetPeer("downstream").Name) },
	},
	{
		name: "down", breaks: true, hold: outage,
		set:   func(t testing.TB, p *toxitest.Proxy) { p.SetEnabled(t, false) },
		clear: func(t testing.TB, p *toxitest.Proxy) { p.SetEnabled(t, true) },
	},
}

// faultServers maps each server's proxy name to the provider it serves.
var faultServers = map[string]string{"vault": vault.Name, "minio": awssts.Name, "kube": kube.Name}

// TestFaults puts Toxiproxy between the broker and each real server (Vault,
// MinIO, kube-apiserver) and, for each fault, checks that a session start
// fails cleanly (nothing valid left at any server, nothing live in the
// store, the error names the provider and holds no secret) or, under
// latency, succeeds; that revoke --all reports what it could not revoke as
// pending and status shows it; and that once the fault is gone the retry
// loop revokes everything, each lease exactly once.
//
// The twelve cases run at the same time (each with its own Vault, MinIO,
// namespace and Toxiproxy), so the whole test takes about as long as the
// slowest case, not the sum.
func TestFaults(t *testing.T) {
	// The harnesses set these too, to the same values, concurrently.
	t.Setenv("CB_TEST_BROKER_TOKEN", vaulttest.RootToken)
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.RootUser)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.RootPassword)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	var wg sync.WaitGroup
	for server := range faultServers {
		for _, f := range faults {
			// Not t.Parallel: the harness sets environment variables, and
			// -parallel (GOMAXPROCS) would serialise the one-minute outages.
			wg.Go(func() { t.Run(server+"/"+f.name, func(t *testing.T) { runFault(t, server, f) }) })
		}
	}
	wg.Wait()
}

func runFault(t *testing.T, server string, f fault) {
	provider := faultServers[server]
	ctx := context.Background()
	tp := toxitest.Start(t)
	proxies := map[string]*toxitest.Proxy{}
	spies := map[string]*spy{}
	h := newHarness(t, withMinIO(), withKube(), withToxiproxy(tp, proxies), withSpies(spies))
	secrets := func() []string { return h.secrets(spies) }

	// A session started before the fault: live credentials everywhere.
	before := h.start("agent-all")
	h.awsCreds(before)

	p := proxies[server]
	f.set(t, p)
	setAt := time.Now()
	began := time.Now()
	si, err := bounded(t, "session start", func() (broker.SessionInfo, error) {
		return h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-all"})
	})
	took := time.Since(began)
	if !f.breaks {
		if err != nil {
			t.Fatalf("start under %s of %s: %v; want success (below every client timeout)", faultLatency, server, err)
		}
		t.Logf("MEASURE %s/%s: session start succeeded in %s", server, f.name, took.Round(100*time.Millisecond))
		h.token(si)
		h.kubeToken(si)
		h.awsCreds(si)
	} else {
		t.Logf("MEASURE %s/%s: session start failed in %s", server, f.name, took.Round(100*time.Millisecond))
		h.assertStartFailedCleanly(err, provider, before.ID, secrets())
	}

	began = time.Now()
	rep, err := bounded(t, "revoke --all", func() (broker.RevokeReport, error) {
		return h.b.RevokeAll(ctx, h.caller, "fault test")
	})
	t.Logf("MEASURE %s/%s: revoke --all returned in %s (complete=%v)", server, f.name, time.Since(began).Round(100*time.Millisecond), rep.Complete)
	noSecretIn(t, "revoke --all error", errString(err), secrets())
	if !f.breaks {
		if err != nil || !rep.Complete {
			t.Fatalf("revoke --all under latency: complete=%v err=%v", rep.Complete, err)
		}
	} else {
		h.assertPendingOnly(rep, err, provider)
	}
	if wait := f.hold - time.Since(setAt); wait > 0 {
		h.tickFor(wait, provider)
	}
	cleared := len(h.auditEvents())
	f.clear(t, p)
	back := time.Now()
	h.tickUntilSettled(3 * time.Minute)
	if f.breaks {
		t.Logf("MEASURE %s/%s: every pending lease revoked %s after the server was back", server, f.name, time.Since(back).Round(100*time.Millisecond))
	}
	h.assertAllDead(spies, "after the fault cleared")
	h.assertStoreSettled("after the fault cleared", false)
	h.assertRevokedOnce(cleared)
	h.assertNoLeaks()
}

// bounded runs call and fails the test if it has not returned after
// callLimit: every provider call must give up on its own.
func bounded[T any](t *testing.T, what string, call func() (T, error)) (T, error) {
	t.Helper()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() { v, err := call(); done <- result{v, err} }()
	select {
	case r := <-done:
		return r.v, r.err
	case <-time.After(callLimit):
		t.Fatalf("%s hung: no answer after %s", what, callLimit)
		panic("unreachable")
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// assertStartFailedCleanly checks a failed start: ErrProvider naming the
// provider, no secret in the message, and for the failed session nothing
// valid at any server and nothing live in the store (a lease that could
// not be revoked yet may stay, pending).
func (h *harness) assertStartFailedCleanly(err error, provider, before string, secrets []string) {
	h.t.Helper()
	if !errors.Is(err, broker.ErrProvider) || !strings.Contains(err.Error(), provider+":") {
		h.t.Fatalf("start failed with %v; want ErrProvider naming %s", err, provider)
	}
	noSecretIn(h.t, "the start error", err.Error(), secrets)
	ctx := context.Background()
	ss, lerr := h.st.ListSessions(ctx, leases.SessionFilter{})
	if lerr != nil {
		h.t.Fatal(lerr)
	}
	var failed leases.Session
	for _, s := range ss {
		if s.ID != before {
			failed = s
		}
	}
	if failed.ID == "" || failed.State == leases.SessionActive || failed.State == leases.SessionStarting {
		h.t.Fatalf("failed session in the store: %+v; want it ending or ended", failed)
	}
	ls, _ := h.st.ListLeases(ctx, failed.ID)
	for _, l := range ls {
		if l.State != leases.LeaseRevokePending {
			h.t.Errorf("lease %s of the failed session is %s; want none, or pending", l.ID, l.State)
		}
	}
	if ids, _ := h.w.List(); len(ids) != 1 {
		h.t.Errorf("session dirs after the failed start: %v; want only the earlier session's", ids)
	}
	// Asked of the servers directly: this finds what the broker never
	// heard of (an answer lost after the server acted). What is left must
	// at least be known to the store: a pending lease, or the intent that
	// makes the loop search the server again.
	pending := map[string]bool{}
	for _, l := range ls {
		pending[l.Provider] = true
	}
	ins, ierr := h.st.ListIntents(ctx)
	if ierr != nil {
		h.t.Fatal(ierr)
	}
	for _, in := range ins {
		if in.SessionID == failed.ID {
			pending[in.Provider] = true
		}
	}
	if n := h.vaultTokensOf(failed.ID); n != 0 && !pending[vault.Name] {
		h.t.Errorf("%d Vault tokens of the failed session are valid, and the store has no pending Vault lease for them", n)
	}
	if left := h.kubeObjects(failed.ID); len(left) != 0 && !pending[kube.Name] {
		h.t.Errorf("kube objects of the failed session %v, and the store has no pending kube lease for them", left)
	}
}

// assertPendingOnly checks a revoke --all during a fault: ErrPending, the
// faulty provider's leases (only) pending in the report and in status.
func (h *harness) assertPendingOnly(rep broker.RevokeReport, err error, provider string) {
	h.t.Helper()
	if !errors.Is(err, broker.ErrPending) || rep.Complete {
		h.t.Fatalf("revoke --all during the fault: complete=%v err=%v; want ErrPending", rep.Complete, err)
	}
	if got := pendingProviders(rep.Pending); len(got) != 1 || got[0] != provider {
		h.t.Errorf("revoke --all pending providers %v; want [%s]", got, provider)
	}
	for _, r := range rep.Providers {
		if r.Provider == provider && (r.Pending == 0 || r.Error == "") {
			h.t.Errorf("report for %s: %+v; want an error and pending leases", provider, r)
		}
		if r.Provider != provider && r.Pending != 0 {
			h.t.Errorf("report for %s: %+v; want nothing pending", r.Provider, r)
		}
	}
	st, serr := h.b.Status(context.Background())
	if serr != nil {
		h.t.Fatal(serr)
	}
	if len(st.Pending) != len(rep.Pending) || st.Incident == nil {
		h.t.Errorf("status during the fault: %d pending, incident %v; want %d pending and the incident", len(st.Pending), st.Incident, len(rep.Pending))
	}
}

// tickFor runs the background loop every second for d while the fault
// holds, checking that status keeps showing the pending leases.
func (h *harness) tickFor(d time.Duration, provider string) {
	h.t.Helper()
	ctx := context.Background()
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Second) {
		h.b.Tick(ctx)
		st, err := h.b.Status(ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		if got := pendingProviders(st.Pending); len(got) != 1 || got[0] != provider {
			h.t.Fatalf("status while %s is away: pending providers %v", provider, got)
		}
	}
}

// tickUntilSettled runs the background loop every 500 ms until status
// shows nothing pending, as the daemon's loop would. An intent a failed
// mint left (its server could not be asked then) is settled by the loop
// once it is staleIntent old: the broker's clock is moved on for it.
func (h *harness) tickUntilSettled(limit time.Duration) {
	h.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(limit)
	for {
		h.b.Tick(ctx)
		st, err := h.b.Status(ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		ins, err := h.st.ListIntents(ctx)
		if err != nil {
			h.t.Fatal(err)
		}
		if len(st.Pending) == 0 && len(ins) == 0 {
			return
		}
		if len(st.Pending) == 0 && len(ins) > 0 && h.offset.Load() == 0 {
			h.t.Logf("%d intents of failed mints left; moving the broker's clock on 6m for the loop to settle them", len(ins))
			h.offset.Store(int64(6 * time.Minute))
		}
		if time.Now().After(deadline) {
			for _, l := range st.Pending {
				h.t.Logf("  pending %s: %s", l.ID, l.LastError)
			}
			h.t.Fatalf("%d leases pending and %d intents left %s after the fault cleared", len(st.Pending), len(ins), limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
