package broker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers/vault"
)

// hookFunc is a broker.Hooks that calls f at every step.
type hookFunc func(step string)

func (f hookFunc) At(step string) { f(step) }

func withHooks(f hookFunc) harnessOpt { return func(c *harnessConfig) { c.hooks = f } }

// startingSession returns the one session the broker lists, which must be
// starting.
func startingSession(t *testing.T, b *broker.Broker) broker.SessionInfo {
	t.Helper()
	ss, err := b.ListSessions(context.Background(), false)
	if err != nil || len(ss) != 1 {
		t.Fatalf("sessions listed during a start: %+v %v; want one", ss, err)
	}
	return ss[0]
}

// TestSessionStartingUntilItsDirIsWritten: while a start mints and writes
// its dir the session is listed as starting, and it is active only once
// its dir holds its credentials.
func TestSessionStartingUntilItsDirIsWritten(t *testing.T) {
	seen := map[string]string{} // step → state listed then
	dirAt := map[string]bool{}  // step → token file present then
	var h *harness
	h = newHarness(t, withHooks(func(step string) {
		if step != "after-record" && step != "before-write-dir" && step != "before-activate" {
			return
		}
		s := startingSession(t, h.b)
		seen[step] = s.State
		_, err := os.Stat(filepath.Join(s.Dir, vault.TokenFile))
		dirAt[step] = err == nil
	}))
	si := h.start("agent-readonly")
	for _, step := range []string{"after-record", "before-write-dir", "before-activate"} {
		if seen[step] != string(leases.SessionStarting) {
			t.Errorf("at %s the session is listed %q, want starting", step, seen[step])
		}
	}
	if dirAt["before-write-dir"] || !dirAt["before-activate"] {
		t.Errorf("token file present before the dir is written: %v, before activation: %v; want false, true",
			dirAt["before-write-dir"], dirAt["before-activate"])
	}
	if si.State != string(leases.SessionActive) {
		t.Fatalf("start returned state %q, want active", si.State)
	}
	if got, _ := h.st.GetSession(context.Background(), si.ID); got.State != leases.SessionActive {
		t.Fatalf("stored state %q after the start, want active", got.State)
	}
}

// TestStartEndedWhileStartingFails: a revoke --all on another broker
// settles the starting session (in one batch, without this broker's
// session lock) after its dir was written: marked ending while its leases
// are left, or ended when the provider-wide revocation already took them.
// Activation must not bring it back: the start fails, its dir goes, its
// token is revoked, and it ends.
func TestStartEndedWhileStartingFails(t *testing.T) {
	for _, tc := range []struct {
		name     string
		revoked  bool // the peer revoked provider-wide and forgot the leases
		wantFrom leases.SessionState
	}{
		{"leases left", false, leases.SessionEnding},
		{"leases revoked", true, leases.SessionEnded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var h *harness
			var tok string
			var marked leases.SessionState
			h = newHarness(t, withHooks(func(step string) {
				if step != "before-activate" {
					return
				}
				ctx := context.Background()
				s := startingSession(t, h.b)
				b, err := os.ReadFile(filepath.Join(s.Dir, vault.TokenFile))
				if err != nil {
					t.Errorf("read the token at before-activate: %v", err)
				}
				tok = string(b)
				if tc.revoked {
					ls, _ := h.st.ListLeases(ctx, s.ID)
					if _, err := h.vp.RevokeAll(ctx, ls); err != nil {
						t.Errorf("vault revoke all: %v", err)
					}
					for _, l := range ls {
						_ = h.st.DeleteLease(ctx, l.ID)
					}
				}
				if _, err := h.st.(leases.Batcher).FinishSessions(ctx, []string{s.ID}, "incident: elsewhere", time.Now()); err != nil {
					t.Errorf("finish sessions: %v", err)
				}
				got, _ := h.st.GetSession(ctx, s.ID)
				marked = got.State
			}))
			ctx := context.Background()
			_, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-readonly"})
			if !errors.Is(err, broker.ErrIncident) {
				t.Fatalf("start of a session ended while it started: %v; want ErrIncident", err)
			}
			if tok == "" {
				t.Fatal("the hook did not run: the race was not run")
			}
			if marked != tc.wantFrom {
				t.Fatalf("the peer left the session %q, want %q: the case is not the one named", marked, tc.wantFrom)
			}
			h.mu.Lock()
			h.tokens = append(h.tokens, tok)
			h.mu.Unlock()
			if h.tokenValid(tok) {
				t.Error("the token of a start that failed is still valid")
			}
			ss, _ := h.st.ListSessions(ctx, leases.SessionFilter{})
			if len(ss) != 1 || ss[0].State != leases.SessionEnded {
				t.Fatalf("sessions after the failed start: %+v; want one, ended", ss)
			}
			if _, err := os.Stat(filepath.Join(h.w.Root, ss[0].ID)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("dir of the failed start: %v; want it gone", err)
			}
			h.assertNoLeaks()
		})
	}
}
