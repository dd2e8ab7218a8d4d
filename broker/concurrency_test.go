package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/kube"
)

// TestConcurrentStartsWithRevokeAll: 200 session starts across five roles
// (Vault, Vault with PKI, AWS through MinIO, Kubernetes, and all three
// together) race a revoke --all (run under -race by make test).
// Afterwards no credential is valid at any server (Vault tokens, MinIO
// credentials, Kubernetes ServiceAccounts), no session dir is left, and
// the store is consistent: nothing live, no lease, no intent.
func TestConcurrentStartsWithRevokeAll(t *testing.T) {
	h := newHarness(t, withMinIO(), withKube())
	ctx := context.Background()
	var (
		credsMu sync.Mutex
		creds   [][3]string // AWS credentials read from session dirs
	)
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
				rep, err := h.b.RevokeAll(ctx, h.caller, "mid-flight incident")
				if err != nil || !rep.Complete {
					// revoke --all exits 0 only for a complete report; the
					// runbook promises nothing stays valid after that.
					t.Errorf("revoke all: complete=%v pending=%d: %v", rep.Complete, len(rep.Pending), err)
				}
			})
		}
		role := []string{"agent-readonly", "agent-dev", "agent-s3", "agent-k8s", "agent-all"}[i%5]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: role})
			switch {
			case err == nil:
				started.Add(1)
				// The dir may already be wiped by the incident.
				if b, rerr := os.ReadFile(filepath.Join(si.Dir, awssts.ProcessFile)); rerr == nil {
					var pc struct {
						AccessKeyID                   string `json:"AccessKeyId"`
						SecretAccessKey, SessionToken string
					}
					if json.Unmarshal(b, &pc) == nil {
						credsMu.Lock()
						creds = append(creds, [3]string{pc.AccessKeyID, pc.SecretAccessKey, pc.SessionToken})
						credsMu.Unlock()
						h.mu.Lock() // checked against logs and the store by the harness
						h.tokens = append(h.tokens, pc.SecretAccessKey, pc.SessionToken)
						h.mu.Unlock()
					}
				}
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
	// No second revoke --all: the first one, which reported complete
	// (exit 0), must have left nothing valid, starts in flight included.
	if v := h.sessionTokens(); v != 0 {
		t.Fatalf("%d session tokens still valid at Vault", v)
	}
	if len(creds) == 0 {
		t.Fatal("no AWS credentials were read: the test proves nothing about MinIO")
	}
	for _, c := range creds {
		if h.s3Works(c[0], c[1], c[2]) {
			t.Fatalf("MinIO still accepts the credentials %s after revoke --all", c[0])
		}
	}
	sas, err := h.kube.Admin.CoreV1().ServiceAccounts(h.kube.NS).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=" + kube.ManagedBy})
	if err != nil || len(sas.Items) != 0 {
		t.Fatalf("ServiceAccounts of sessions left in %s: %d (%v)", h.kube.NS, len(sas.Items), err)
	}
	if ids, _ := h.w.List(); len(ids) != 0 {
		t.Fatalf("%d session dirs left", len(ids))
	}
	live, err := h.st.ListSessions(ctx, leases.SessionFilter{States: []leases.SessionState{leases.SessionStarting, leases.SessionActive, leases.SessionEnding}})
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
