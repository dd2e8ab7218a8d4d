package broker_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts"
)

// renewHook wraps a provider and keeps every grant its Renew returned.
// Once armed, the next Renew calls before (if set) before it reaches the
// server and after (if set) once the server answered, before the broker
// checks or records the grant.
type renewHook struct {
	providers.Provider
	armed         atomic.Bool
	before, after func()
	mu            sync.Mutex
	grants        []providers.Grant
}

func (r *renewHook) Renew(ctx context.Context, s providers.Session, l leases.Lease, f providers.FileReader) (providers.Grant, error) {
	armed := r.armed.CompareAndSwap(true, false)
	if armed && r.before != nil {
		r.before()
	}
	g, err := r.Provider.Renew(ctx, s, l, f)
	if err == nil {
		r.mu.Lock()
		r.grants = append(r.grants, g)
		r.mu.Unlock()
	}
	if armed && r.after != nil {
		r.after()
	}
	return g, err
}

// renewed returns the AWS keys of every grant Renew returned.
func (r *renewHook) renewed(t *testing.T) []awsKeys {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []awsKeys
	for _, g := range r.grants {
		var pc struct {
			AccessKeyID                   string `json:"AccessKeyId"`
			SecretAccessKey, SessionToken string
		}
		if err := json.Unmarshal([]byte(g.Files[awssts.ProcessFile].Reveal()), &pc); err != nil {
			t.Fatal(err)
		}
		out = append(out, awsKeys{pc.AccessKeyID, pc.SecretAccessKey, pc.SessionToken})
	}
	return out
}

func withRenewHook(hooks map[string]*renewHook) harnessOpt {
	return func(c *harnessConfig) {
		c.wrap = func(p providers.Provider) providers.Provider {
			r := &renewHook{Provider: p}
			hooks[p.Name()] = r
			return r
		}
	}
}

// startRefreshable starts an agent-s3 session whose AWS keys live shorter
// than it and moves the broker's clock past 80 % of their life, so the
// next tick re-mints them. It returns the session and its current keys.
func startRefreshable(t *testing.T, h *harness) (broker.SessionInfo, awsKeys) {
	t.Helper()
	si, err := h.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: "agent-s3", TTL: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	id, sk, tok := h.awsCreds(si)
	if !h.s3Works(id, sk, tok) {
		t.Fatal("fresh session credentials do not work")
	}
	h.offset.Store(int64(49 * time.Minute)) // 82 % of the 1h credentials
	return si, awsKeys{id, sk, tok}
}

// TestRefreshRacingRevokeAll: the refresher listed a session as active, then
// revoke --all runs (on this broker, or on another broker sharing the
// store) and revokes at the server before the refresher's call reaches it,
// so the server issues keys after the provider-wide cut-off. The broker
// must see the incident under the session lock, revoke those keys and
// write nothing: afterwards no key the store does not know is valid, and
// (when the dir is still there) it holds only the recorded keys.
func TestRefreshRacingRevokeAll(t *testing.T) {
	for _, tc := range []struct {
		name string
		// declare runs revoke --all while the refresher holds the session
		// lock, and returns once it revoked at the providers.
		declare func(t *testing.T, h *harness, p providers.Provider, id string) (wait func())
	}{
		{"revoke all on this broker", func(t *testing.T, h *harness, _ providers.Provider, id string) func() {
			done := make(chan error, 1)
			go func() {
				_, err := h.b.RevokeAll(context.Background(), h.caller, "race with the refresher")
				done <- err
			}()
			// Its providers have revoked once it forgot their leases; it
			// then waits for the session lock to wipe the dir.
			waitFor(t, 20*time.Second, "revoke --all past the providers", func() bool {
				ls, err := h.st.ListLeases(context.Background(), id)
				return err == nil && len(ls) == 0
			})
			return func() {
				if err := <-done; err != nil {
					t.Errorf("revoke --all: %v", err)
				}
			}
		}},
		{"incident from another broker", func(t *testing.T, h *harness, p providers.Provider, id string) func() {
			// What another broker sharing the store does: lock, revoke at
			// the provider for the whole fleet, forget the leases, end the
			// session. This host hears of it at its next tick.
			ctx := context.Background()
			if err := h.st.SetIncident(ctx, leases.Incident{Reason: "declared elsewhere", DeclaredAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
			ls, _ := h.st.ListLeases(ctx, id)
			if _, err := p.RevokeAll(ctx, ls); err != nil {
				t.Fatal(err)
			}
			for _, l := range ls {
				if err := h.st.DeleteLease(ctx, l.ID); err != nil {
					t.Fatal(err)
				}
			}
			s, _ := h.st.GetSession(ctx, id)
			s.State, s.EndReason, s.EndedAt = leases.SessionEnded, "incident: declared elsewhere", time.Now()
			if err := h.st.UpdateSession(ctx, s); err != nil {
				t.Fatal(err)
			}
			return func() {}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hooks := map[string]*renewHook{}
			h := newHarness(t, withMinIO(), withRenewHook(hooks))
			si, old := startRefreshable(t, h)
			aws := hooks[awssts.Name]
			var wait func()
			aws.before = func() { wait = tc.declare(t, h, aws.Provider, si.ID) }
			aws.armed.Store(true)
			h.b.Tick(context.Background())
			if aws.armed.Load() {
				t.Fatal("the refresher did not renew the AWS lease: the race was not run")
			}
			wait()
			// Still there when revoke --all ran elsewhere (this host wipes
			// at its next tick): it must hold only the recorded keys.
			onDisk := old.id
			if _, err := os.Stat(filepath.Join(si.Dir, awssts.ProcessFile)); err == nil {
				onDisk, _, _ = h.awsCreds(si)
			} else if tc.name == "incident from another broker" {
				t.Fatalf("the session dir went before this host heard of the incident: %v", err)
			}
			renewed := aws.renewed(t)
			if len(renewed) != 1 {
				t.Fatalf("%d renewals, want 1", len(renewed))
			}
			if onDisk != old.id {
				t.Error("the session dir holds keys minted after revoke --all")
			}
			if h.s3Works(renewed[0].id, renewed[0].secret, renewed[0].token) {
				t.Error("keys minted by a refresh racing revoke --all are valid and the store does not know them")
			}
			if h.s3Works(old.id, old.secret, old.token) {
				t.Error("the session's first keys survived revoke --all")
			}
			if ls, _ := h.st.ListLeases(context.Background(), si.ID); len(ls) != 0 {
				t.Errorf("leases recorded after revoke --all: %+v", ls)
			}
			if !strings.Contains(h.logs.String(), "refresh discarded") {
				t.Error("the broker log does not say the refresh was discarded")
			}
			h.assertNoLeaks()
		})
	}
}

// TestRefreshNotRecordedIsRevoked: the store refuses to record a renewed
// lease (a real SQLite error: a trigger aborts every lease update). The
// keys that renewal issued are revoked at the server and never written:
// the session dir still holds the recorded keys and the store still names
// them. Once the store records again, the next refresh hands out working
// keys.
func TestRefreshNotRecordedIsRevoked(t *testing.T) {
	hooks := map[string]*renewHook{}
	h := newHarness(t, withMinIO(), withRenewHook(hooks))
	ctx := context.Background()
	si, old := startRefreshable(t, h)
	db, err := sql.Open("sqlite", "file:"+h.db+"?_busy_timeout=10000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	aws := hooks[awssts.Name]
	aws.after = func() {
		if _, err := db.Exec(`CREATE TRIGGER refuse_lease_updates BEFORE UPDATE ON leases
			BEGIN SELECT RAISE(ABORT, 'test: lease updates refused'); END`); err != nil {
			t.Errorf("create trigger: %v", err)
		}
	}
	aws.armed.Store(true)
	h.b.Tick(ctx)
	renewed := aws.renewed(t)
	if len(renewed) != 1 {
		t.Fatalf("%d renewals, want 1", len(renewed))
	}
	if id, _, _ := h.awsCreds(si); id != old.id {
		t.Error("the session dir holds keys whose lease the store could not record")
	}
	ls, err := h.st.ListLeases(ctx, si.ID)
	if err != nil || len(ls) != 1 || ls[0].ExternalID != old.id {
		t.Fatalf("leases after the failed record: %+v %v; want the first keys'", ls, err)
	}
	if h.s3Works(renewed[0].id, renewed[0].secret, renewed[0].token) {
		t.Error("keys whose lease the store could not record are still valid")
	}
	if !strings.Contains(h.logs.String(), "lease updates refused") {
		t.Error("the broker log does not name the store's error")
	}
	if _, err := db.Exec(`DROP TRIGGER refuse_lease_updates`); err != nil {
		t.Fatal(err)
	}
	h.b.Tick(ctx)
	id, sk, tok := h.awsCreds(si)
	if id == old.id || id == renewed[0].id {
		t.Fatal("the next refresh did not hand out new keys")
	}
	if !h.s3Works(id, sk, tok) {
		t.Error("keys of the refresh after the store recovered do not work")
	}
	if ls, _ := h.st.ListLeases(ctx, si.ID); len(ls) != 1 || ls[0].ExternalID != id {
		t.Errorf("leases after recovery: %+v; want the keys on disk", ls)
	}
	h.assertNoLeaks()
}
