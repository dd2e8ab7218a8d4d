package broker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
)

// TestConcurrentStartsWithRevokeAll: 200 session starts across two roles
// race a revoke --all (run under -race by make test). Afterwards no
// session token is valid at Vault, no session dir is left, and the store
// is consistent: nothing live, no lease, no intent.
func TestConcurrentStartsWithRevokeAll(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	const n = 200
	var (
		wg               sync.WaitGroup
		started, refused atomic.Int32
		revoked          = make(chan struct{})
	)
	sem := make(chan struct{}, 16)
	for i := range n {
		if i == n/2 {
			wg.Go(func() {
				defer close(revoked)
				if _, err := h.b.RevokeAll(ctx, h.caller, "mid-flight incident"); err != nil {
					t.Errorf("revoke all: %v", err)
				}
			})
		}
		role := []string{"agent-readonly", "agent-dev"}[i%2]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			_, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: role})
			switch {
			case err == nil:
				started.Add(1)
			case errors.Is(err, broker.ErrIncident):
				refused.Add(1)
			case errors.Is(err, broker.ErrProvider):
				// Minted just before the epoch went, then its secret read
				// was refused: a clean failure, checked below like the rest.
				refused.Add(1)
			default:
				t.Errorf("start %s: %v", role, err)
			}
		})
	}
	wg.Wait()
	<-revoked
	t.Logf("%d started before the incident, %d refused", started.Load(), refused.Load())
	if refused.Load() == 0 {
		t.Fatal("no start was refused: the incident did not land mid-flight, the test proves little")
	}
	// A second revoke --all settles whatever was started just before the
	// lock and is still live, as the runbook says to do.
	if rep, err := h.b.RevokeAll(ctx, h.caller, "settle"); err != nil || !rep.Complete {
		t.Fatalf("second revoke all: %+v %v", rep, err)
	}
	if v := h.sessionTokens(); v != 0 {
		t.Fatalf("%d session tokens still valid at Vault", v)
	}
	if ids, _ := h.w.List(); len(ids) != 0 {
		t.Fatalf("%d session dirs left", len(ids))
	}
	live, err := h.st.ListSessions(ctx, leases.SessionFilter{States: []leases.SessionState{leases.SessionActive, leases.SessionEnding}})
	if err != nil || len(live) != 0 {
		t.Fatalf("live sessions after revoke --all: %d (%v)", len(live), err)
	}
	all, _ := h.st.ListSessions(ctx, leases.SessionFilter{})
	ls, _ := h.st.ListLeases(ctx, "")
	var sessionLeases int
	for _, l := range ls {
		if !leases.IsBrokerSession(l.SessionID) {
			sessionLeases++
		}
	}
	in, _ := h.st.ListIntents(ctx)
	// Every started session is recorded; a refused one is recorded only if
	// it got past the first incident check and lost at the re-check.
	if sessionLeases != 0 || len(in) != 0 || len(all) < int(started.Load()) || len(all) > n {
		t.Fatalf("store after the race: %d sessions, %d session leases, %d intents", len(all), sessionLeases, len(in))
	}
}
