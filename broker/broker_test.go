package broker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers/vault"
)

func TestSessionLifecycle(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	si := h.start("agent-dev")
	tok := h.token(si)

	// The dir: 0500, files 0400, on tmpfs, with the token and both secrets.
	for rel, mode := range map[string]os.FileMode{
		".": 0o500 | os.ModeDir, "vault": 0o500 | os.ModeDir, vault.TokenFile: 0o400, "env": 0o400,
		"session.json": 0o400, "vault/secrets/config.json": 0o400, "vault/secrets/cert.json": 0o400,
	} {
		fi, err := os.Stat(filepath.Join(si.Dir, rel))
		if err != nil {
			t.Fatalf("session dir: %v", err)
		}
		if fi.Mode() != mode {
			t.Errorf("%s mode = %v, want %v", rel, fi.Mode(), mode)
		}
	}
	if !h.tokenValid(tok) {
		t.Fatal("a fresh session token is rejected")
	}
	if _, err := h.client(tok).Logical().Read("secret/data/agent/dev/config"); err != nil {
		t.Fatalf("session token cannot read its role's secret: %v", err)
	}
	var certLease string
	for _, l := range si.Leases {
		if l.Kind == vault.KindSecret {
			certLease = strings.TrimPrefix(l.ID, "vault/secret/")
		}
	}
	if certLease == "" {
		t.Fatalf("no PKI lease recorded: %+v", si.Leases)
	}

	got, err := h.b.EndSession(ctx, h.caller, si.ID, "test")
	if err != nil {
		t.Fatalf("end: %v", err)
	}
	if got.State != string(leases.SessionEnded) || len(got.Leases) != 0 {
		t.Errorf("after end: state %s with %d leases, want ended with none", got.State, len(got.Leases))
	}
	if h.tokenValid(tok) {
		t.Error("session token still valid after session end")
	}
	waitLeaseGone(t, h, certLease)
	if _, err := os.Stat(si.Dir); !os.IsNotExist(err) {
		t.Errorf("session dir still there after end: %v", err)
	}
	// Ending again is harmless and reports the ended session.
	if _, err := h.b.EndSession(ctx, h.caller, si.ID, "again"); err != nil {
		t.Errorf("second end: %v", err)
	}
	h.assertNoLeaks()
}

func waitLeaseGone(t *testing.T, h *harness, leaseID string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := h.srv.Client.Logical().Write("sys/leases/lookup", map[string]any{"lease_id": leaseID})
		if err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("lease %s is still valid 10s after revocation", leaseID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestTTLExpiryRevokes(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-dev", TTL: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	tok := h.token(si)
	var cert string
	for _, l := range si.Leases {
		if l.Kind == vault.KindSecret {
			cert = strings.TrimPrefix(l.ID, "vault/secret/")
		}
	}
	h.b.Tick(ctx) // not expired yet: nothing happens
	if !h.tokenValid(tok) {
		t.Fatal("token revoked before the session's TTL ran out")
	}
	h.offset.Store(int64(61 * time.Second))
	h.b.Tick(ctx)
	if h.tokenValid(tok) {
		t.Fatal("token still valid after the session's TTL ran out")
	}
	waitLeaseGone(t, h, cert)
	got, err := h.b.GetSession(ctx, si.ID)
	if err != nil || got.State != string(leases.SessionEnded) || got.EndReason != "ttl expired" {
		t.Fatalf("session after TTL: %+v, %v; want ended with reason ttl expired", got, err)
	}
	if _, err := os.Stat(si.Dir); !os.IsNotExist(err) {
		t.Errorf("session dir still there after expiry")
	}
}

func TestRevokeAllIncident(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	var toks, dirs, certs []string
	for _, r := range []string{"agent-readonly", "agent-dev", "agent-dev"} {
		si := h.start(r)
		toks = append(toks, h.token(si))
		dirs = append(dirs, si.Dir)
		for _, l := range si.Leases {
			if l.Kind == vault.KindSecret {
				certs = append(certs, strings.TrimPrefix(l.ID, "vault/secret/"))
			}
		}
	}
	if len(certs) != 2 {
		t.Fatalf("want 2 PKI leases, got %d", len(certs))
	}
	rep, err := h.b.RevokeAll(ctx, h.caller, "test incident")
	if err != nil {
		t.Fatalf("revoke all: %v", err)
	}
	if !rep.Complete || rep.Sessions != 3 || len(rep.Providers) != 1 || rep.Providers[0].Method != "revoke-all" {
		t.Errorf("report = %+v; want complete, 3 sessions, vault via revoke-all", rep)
	}
	for i, tok := range toks {
		if h.tokenValid(tok) {
			t.Errorf("token %d valid after revoke --all", i)
		}
		if _, err := os.Stat(dirs[i]); !os.IsNotExist(err) {
			t.Errorf("session dir %d still there after revoke --all", i)
		}
	}
	for _, c := range certs {
		waitLeaseGone(t, h, c)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Errorf("%d session tokens still valid in Vault", n)
	}
	if _, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-readonly"}); !errors.Is(err, broker.ErrIncident) {
		t.Fatalf("start during incident: %v, want ErrIncident", err)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Errorf("a refused start minted %d tokens", n)
	}
	// Idempotent: a second revoke-all succeeds and finds nothing left.
	rep2, err := h.b.RevokeAll(ctx, h.caller, "again")
	if err != nil || !rep2.Complete {
		t.Fatalf("second revoke all: %+v, %v", rep2, err)
	}
	st, err := h.b.Status(ctx)
	if err != nil || st.Incident == nil || st.Incident.Reason != "test incident" || len(st.Sessions) != 0 {
		t.Fatalf("status = %+v, %v; want the first incident and no live sessions", st, err)
	}
	if err := h.b.ClearIncident(ctx, h.caller); err != nil {
		t.Fatal(err)
	}
	si := h.start("agent-readonly")
	if !h.tokenValid(h.token(si)) {
		t.Fatal("a session started after the incident (new epoch) does not work")
	}
	h.assertNoLeaks()
}

// TestRevokeAllWhileVaultDown: revocation that cannot reach Vault stays
// pending, is visible in status, and completes when Vault is back.
func TestRevokeAllWhileVaultDown(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	si := h.start("agent-readonly")
	tok := h.token(si)
	h.proxy.SetUp(false)
	rep, err := h.b.RevokeAll(ctx, h.caller, "vault unreachable")
	if !errors.Is(err, broker.ErrPending) || rep.Complete || len(rep.Pending) == 0 {
		t.Fatalf("revoke all with Vault down: %+v, %v; want ErrPending and pending leases", rep, err)
	}
	if !strings.Contains(rep.Providers[0].Error, "vault") {
		t.Errorf("provider error %q does not name vault", rep.Providers[0].Error)
	}
	if _, err := os.Stat(si.Dir); !os.IsNotExist(err) {
		t.Error("session dir not wiped although the servers were unreachable")
	}
	st, _ := h.b.Status(ctx)
	if len(st.Pending) == 0 || st.Pending[0].LastError == "" {
		t.Fatalf("status shows no pending revocation: %+v", st.Pending)
	}
	if !h.tokenValid(tok) {
		t.Fatal("token invalid although Vault was unreachable: the test proves nothing")
	}
	h.proxy.SetUp(true)
	rep, err = h.b.RevokeAll(ctx, h.caller, "retry")
	if err != nil || !rep.Complete {
		t.Fatalf("revoke all after Vault came back: %+v, %v", rep, err)
	}
	if h.tokenValid(tok) {
		t.Fatal("token still valid after the retried revoke --all")
	}
	got, _ := h.b.GetSession(ctx, si.ID)
	if got.State != string(leases.SessionEnded) {
		t.Errorf("session state %s, want ended", got.State)
	}
}

// TestPendingRevocationRetriedByLoop: a session end while Vault is down is
// retried by the background loop with backoff.
func TestPendingRevocationRetriedByLoop(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	si := h.start("agent-readonly")
	tok := h.token(si)
	h.proxy.SetUp(false)
	if _, err := h.b.EndSession(ctx, h.caller, si.ID, "vault down"); !errors.Is(err, broker.ErrPending) {
		t.Fatalf("end with Vault down: %v, want ErrPending", err)
	}
	h.proxy.SetUp(true)
	h.b.Tick(ctx) // backoff not over yet
	if !h.tokenValid(tok) {
		t.Fatal("retried before its backoff")
	}
	h.offset.Store(int64(3 * time.Second))
	h.b.Tick(ctx)
	if h.tokenValid(tok) {
		t.Fatal("pending revocation was not retried after its backoff")
	}
	got, _ := h.b.GetSession(ctx, si.ID)
	if got.State != string(leases.SessionEnded) || len(got.Leases) != 0 {
		t.Errorf("after retry: %+v; want ended without leases", got)
	}
}

// TestPendingRevocationKeepsItsBackoff: a session left "ending" with only
// pending leases (the server is down) is not retried on every tick by the
// loop that finishes interrupted ends; the pending leases keep their
// backoff (one failed attempt per backoff, not per tick).
func TestPendingRevocationKeepsItsBackoff(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	si := h.start("agent-readonly")
	h.proxy.SetUp(false)
	if _, err := h.b.EndSession(ctx, h.caller, si.ID, "vault down"); !errors.Is(err, broker.ErrPending) {
		t.Fatalf("end with Vault down: %v, want ErrPending", err)
	}
	failures := func() int {
		b, err := os.ReadFile(h.audit)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), `"event":"`+broker.EvLeaseRevokeFail+`"`)
	}
	before := failures()
	h.offset.Store(int64(2 * time.Minute)) // past the first backoff and a minute "ending"
	for range 3 {
		h.b.Tick(ctx)
	}
	if got := failures() - before; got != 1 {
		t.Fatalf("3 ticks in a row made %d failed revocation attempts, want 1 (the next waits for its backoff)", got)
	}
	h.proxy.SetUp(true)
	h.offset.Store(int64(3 * time.Minute))
	h.b.Tick(ctx)
	if got, _ := h.b.GetSession(ctx, si.ID); got.State != string(leases.SessionEnded) {
		t.Fatalf("after Vault came back: %q, want ended", got.State)
	}
}

func TestAllOrNothing(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	_, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-broken"})
	if !errors.Is(err, broker.ErrProvider) || !strings.Contains(err.Error(), "vault") {
		t.Fatalf("start of a role whose secret is denied: %v; want ErrProvider naming vault", err)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("%d session tokens left valid after a failed start", n)
	}
	ss, _ := h.b.ListSessions(ctx, true)
	if len(ss) != 1 || ss[0].State != string(leases.SessionEnded) || !strings.HasPrefix(ss[0].EndReason, "start failed") {
		t.Fatalf("sessions after failed start: %+v", ss)
	}
	if ids, _ := h.w.List(); len(ids) != 0 {
		t.Fatalf("session dirs left after failed start: %v", ids)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	other := 4242
	cases := []struct {
		name   string
		caller broker.Caller
		req    broker.StartRequest
		want   error
		says   string
	}{
		{"unknown role", h.caller, broker.StartRequest{Role: "nope"}, broker.ErrUnknownRole, "known roles are agent-broken, agent-dev, agent-readonly"},
		{"ttl above max", h.caller, broker.StartRequest{Role: "agent-readonly", TTL: "2h"}, broker.ErrBadRequest, "above role agent-readonly's max_ttl 1h0m0s"},
		{"ttl garbage", h.caller, broker.StartRequest{Role: "agent-readonly", TTL: "soon"}, broker.ErrBadRequest, "not a duration"},
		{"ttl too short", h.caller, broker.StartRequest{Role: "agent-readonly", TTL: "5s"}, broker.ErrBadRequest, "below the minimum"},
		{"uid of someone else", broker.Caller{UID: 1000}, broker.StartRequest{Role: "agent-readonly", UID: &other}, broker.ErrForbidden, "only root"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.b.StartSession(ctx, tc.caller, tc.req)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("got %v; want %v saying %q", err, tc.want, tc.says)
			}
		})
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("bad input minted %d tokens", n)
	}
	if _, err := h.b.EndSession(ctx, h.caller, "s-doesnotexist", ""); !errors.Is(err, broker.ErrNotFound) {
		t.Errorf("end unknown session: %v, want ErrNotFound", err)
	}
	if _, err := h.b.EndSession(ctx, h.caller, "../../etc", ""); !errors.Is(err, broker.ErrBadRequest) {
		t.Errorf("end with a path as id: %v, want ErrBadRequest", err)
	}
	if _, err := h.b.RevokeAll(ctx, h.caller, " "); !errors.Is(err, broker.ErrBadRequest) {
		t.Errorf("revoke all without reason: %v, want ErrBadRequest", err)
	}
}

func TestVaultUnreachable(t *testing.T) {
	h := newHarness(t)
	h.proxy.SetUp(false)
	_, err := h.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: "agent-readonly"})
	if !errors.Is(err, broker.ErrProvider) || !strings.Contains(err.Error(), "vault") {
		t.Fatalf("start with Vault unreachable: %v; want ErrProvider naming vault", err)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("%d tokens minted although Vault was unreachable", n)
	}
}

// TestSessionDirOnDiskRefused: a session root on a disk filesystem is
// refused, and the token minted before the write is revoked.
func TestSessionDirOnDiskRefused(t *testing.T) {
	h := newHarness(t, onDisk(t))
	_, err := h.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: "agent-readonly"})
	if err == nil || !strings.Contains(err.Error(), "not tmpfs or ramfs") {
		t.Fatalf("start with a disk session root: %v; want a not-tmpfs error", err)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("%d tokens left valid after the dir write was refused", n)
	}
}

// TestRefresherLeavesVaultTokenAlone: a session token lives to its
// session's end and is not renewable (a renewable one could be renewed
// from inside the session past its end), so the refresher never renews it,
// even when its lease looks short, and it keeps working. The refresher's
// renewals are tested with AWS credentials (TestAWSRefresherRemints).
func TestRefresherLeavesVaultTokenAlone(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	si := h.start("agent-readonly")
	ls, err := h.st.ListLeases(ctx, si.ID)
	if err != nil || len(ls) != 1 {
		t.Fatalf("leases: %v %v", ls, err)
	}
	l := ls[0]
	if l.Renewable || l.ExpiresAt.After(si.ExpiresAt) || l.ExpiresAt.Before(si.ExpiresAt.Add(-3*time.Second)) {
		t.Fatalf("token lease renewable=%v expires %v; want not renewable, ending with the session at %v", l.Renewable, l.ExpiresAt, si.ExpiresAt)
	}
	l.ExpiresAt = l.IssuedAt.Add(3 * time.Minute) // as if Vault had capped it
	if err := h.st.UpdateLease(ctx, l); err != nil {
		t.Fatal(err)
	}
	h.offset.Store(int64(150 * time.Second))
	h.b.Tick(ctx)
	if got, _ := h.st.GetLease(ctx, l.ID); !got.ExpiresAt.Equal(l.ExpiresAt) {
		t.Errorf("the refresher changed the session token's lease: expires %v, was %v", got.ExpiresAt, l.ExpiresAt)
	}
	if audit, _ := os.ReadFile(h.audit); strings.Contains(string(audit), `"event":"lease.renew"`) {
		t.Error("the refresher renewed the session token")
	}
	if !h.tokenValid(h.token(si)) {
		t.Error("the session token stopped working")
	}
}

// TestReconcileEndsSessionsWithoutDir: after a reboot cleared tmpfs, the
// reconciler ends (and revokes) sessions whose dir is gone.
func TestReconcileEndsSessionsWithoutDir(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	si := h.start("agent-readonly")
	tok := h.token(si)
	chmodTree(si.Dir)
	if err := os.RemoveAll(si.Dir); err != nil {
		t.Fatal(err)
	}
	if err := h.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if h.tokenValid(tok) {
		t.Fatal("token of a session whose dir vanished is still valid after reconcile")
	}
}

// TestReconcileRevokesUnrecordedMint: a crash between mint and record
// leaves an intent and a valid token the store does not know; the
// reconciler finds it by its session metadata and revokes it.
func TestReconcileRevokesUnrecordedMint(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	now := time.Now()
	s := leases.Session{ID: "s-crashedmidstart", Role: "agent-readonly", CreatedAt: now, ExpiresAt: now.Add(10 * time.Minute), State: leases.SessionStarting}
	if err := h.st.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	if err := h.st.PutIntent(ctx, leases.Intent{ID: s.ID + "/vault", SessionID: s.ID, Provider: "vault", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	g, err := h.vp.Mint(ctx, providerSession(s), testRoles["agent-readonly"])
	if err != nil {
		t.Fatal(err)
	}
	tok := g.Files[vault.TokenFile].Reveal()
	if !h.tokenValid(tok) {
		t.Fatal("minted token invalid: the test proves nothing")
	}
	// "Crash": nothing recorded. Reconcile as a restarted daemon would.
	if err := h.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if h.tokenValid(tok) {
		t.Fatal("the unrecorded token is still valid after reconcile")
	}
	if in, _ := h.st.ListIntents(ctx); len(in) != 0 {
		t.Errorf("intents left after reconcile: %v", in)
	}
	got, _ := h.st.GetSession(ctx, s.ID)
	if got.State != leases.SessionEnded {
		t.Errorf("interrupted session state %s, want ended", got.State)
	}
	audit, _ := os.ReadFile(h.audit)
	if !strings.Contains(string(audit), `"event":"lease.orphan_revoked"`) {
		t.Error("no audit record of the orphan revocation")
	}
}

// TestOnlyOwnersEndOrHold: a uid that neither started nor owns a session
// can neither end nor hold it; its owner can do both.
func TestOnlyOwnersEndOrHold(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	owner, stranger := broker.Caller{UID: 1000, PID: 1}, broker.Caller{UID: 2000, PID: 2}
	si, err := h.b.StartSession(ctx, owner, broker.StartRequest{Role: "agent-readonly"})
	if err != nil {
		t.Fatal(err)
	}
	h.token(si)
	if err := h.b.CheckHold(ctx, stranger, si.ID); !errors.Is(err, broker.ErrForbidden) {
		t.Errorf("hold by another uid: %v, want ErrForbidden", err)
	}
	if _, err := h.b.EndSession(ctx, stranger, si.ID, "not mine"); !errors.Is(err, broker.ErrForbidden) {
		t.Errorf("end by another uid: %v, want ErrForbidden", err)
	}
	if err := h.b.CheckHold(ctx, owner, si.ID); err != nil {
		t.Errorf("hold by its owner: %v", err)
	}
	if _, err := h.b.EndSession(ctx, owner, si.ID, "mine"); err != nil {
		t.Fatalf("end by its owner: %v", err)
	}
	if err := h.b.CheckHold(ctx, owner, si.ID); !errors.Is(err, broker.ErrBadRequest) {
		t.Errorf("hold of an ended session: %v, want ErrBadRequest", err)
	}
}
