package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var concurrencyTests = []test{
	{"Workers", testConcurrentWorkers},
}

// workers is how many goroutines share one store; run the suite with -race.
const workers = 20

// testConcurrentWorkers runs the broker's own mix of calls (start a session,
// mint, renew, list, end) from many goroutines at once, plus traffic on one
// shared lease and the incident lock, and checks that nothing failed or was
// lost.
func testConcurrentWorkers(t *testing.T, s leases.Store) {
	ctx := t.Context()
	shared := newLease("vault/token/shared", leases.BrokerSessionID, at(0))
	must(t, s.RecordLeases(ctx, "", []leases.Lease{shared}), "RecordLeases")

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			if err := worker(t, s, w, shared); err != nil {
				t.Errorf("worker %d: %v", w, err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	sessions, err := s.ListSessions(ctx, leases.SessionFilter{States: []leases.SessionState{leases.SessionEnding}})
	must(t, err, "ListSessions")
	if len(sessions) != workers {
		t.Errorf("ListSessions(ending) = %d sessions, want %d", len(sessions), workers)
	}
	all, err := s.ListLeases(ctx, "")
	must(t, err, "ListLeases")
	if want := workers*2 + 1; len(all) != want {
		t.Errorf("ListLeases = %d leases, want %d", len(all), want)
	}
	pending, err := s.ListLeasesByState(ctx, leases.LeaseRevokePending)
	must(t, err, "ListLeasesByState")
	if len(pending) != workers {
		t.Errorf("ListLeasesByState(revoke_pending) = %d leases, want %d", len(pending), workers)
	}
	wantIntents(t, s)
	if _, err := s.GetLease(ctx, shared.ID); err != nil {
		t.Errorf("GetLease(shared): %v", err)
	}
}

// worker is one session's life; w makes its ids unique.
func worker(t *testing.T, s leases.Store, w int, shared leases.Lease) error {
	ctx := t.Context()
	sid := fmt.Sprintf("s%02d", w)
	sess := newSession(sid, at(time.Duration(w)*time.Millisecond))
	if err := s.CreateSession(ctx, sess); err != nil {
		return err
	}
	intent := newIntent("intent-"+sid, sid, sess.CreatedAt)
	if err := s.PutIntent(ctx, intent); err != nil {
		return err
	}
	ls := []leases.Lease{
		newLease("vault/token/"+sid, sid, sess.CreatedAt),
		newLease("aws/key/"+sid, sid, sess.CreatedAt.Add(time.Microsecond)),
	}
	if err := s.RecordLeases(ctx, intent.ID, ls); err != nil {
		return err
	}
	for i := range 3 {
		ls[0].ExpiresAt = ls[0].ExpiresAt.Add(time.Minute)
		if err := s.UpdateLease(ctx, ls[0]); err != nil {
			return err
		}
		// Every worker renews the shared lease too: last writer wins, but
		// none may fail.
		sh := shared
		sh.Attempts = w*10 + i
		if err := s.UpdateLease(ctx, sh); err != nil {
			return err
		}
		if _, err := s.ListLeases(ctx, sid); err != nil {
			return err
		}
		if _, err := s.ListSessions(ctx, leases.SessionFilter{ExpiredBefore: at(time.Hour)}); err != nil {
			return err
		}
		if _, _, err := s.GetIncident(ctx); err != nil {
			return err
		}
	}
	if w%5 == 0 {
		if err := s.SetIncident(ctx, leases.Incident{Reason: sid, DeclaredAt: at(0), CallerUID: w}); err != nil {
			return err
		}
		if err := s.ClearIncident(ctx); err != nil {
			return err
		}
	}
	got, err := s.ListLeases(ctx, sid)
	if err != nil {
		return err
	}
	if len(got) != len(ls) {
		return fmt.Errorf("ListLeases(%s) = %d leases, want %d", sid, len(got), len(ls))
	}

	ls[1].State = leases.LeaseRevokePending
	if err := s.UpdateLease(ctx, ls[1]); err != nil {
		return err
	}
	sess.State = leases.SessionEnding
	sess.EndReason = "done"
	return s.UpdateSession(ctx, sess)
}
