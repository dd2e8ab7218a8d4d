package broker_test

// IAM revocation is protocol-tested against iamtest (no IAM server runs
// here); STS is a real MinIO.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers/awssts"
)

// TestAWSIAMOverflowReMintsLiveSessions: when the role's deny policy would
// pass its size limit, the broker falls back to a TokenIssueTime cut-off
// (audited), which denies the role's live sessions too; the refresher then
// re-mints their credentials once the cut-off has passed, not before, so
// they keep working with credentials issued after it.
func TestAWSIAMOverflowReMintsLiveSessions(t *testing.T) {
	h := newHarness(t, withMinIO(), withIAMRevocation())
	ctx := context.Background()
	live := h.start("agent-s3")
	before, err := h.st.GetLease(ctx, "aws/sts/"+live.ID)
	if err != nil {
		t.Fatal(err)
	}
	// Ended sessions of the role whose credentials may still be valid:
	// more per-session denies than the policy holds.
	now := h.now()
	for i := range 300 {
		s := leases.Session{ID: fmt.Sprintf("ended-%03d-%s", i, strings.Repeat("x", 24)), Role: "agent-s3", UID: -1,
			CreatedAt: now.Add(-time.Minute), ExpiresAt: now.Add(10 * time.Minute), State: leases.SessionEnded, EndedAt: now, EndReason: "test"}
		if err := h.st.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	gone := h.start("agent-s3")
	if _, err := h.b.EndSession(ctx, h.caller, gone.ID, "test"); err != nil {
		t.Fatalf("end with a full deny policy: %v", err)
	}
	cut := policyCutoff(t, h)
	if !cut.After(now.Add(awssts.RevokeAllSkew)) {
		t.Fatalf("fallback cut-off %s is not past the end plus the %s skew margin", cut, awssts.RevokeAllSkew)
	}
	if a, _ := os.ReadFile(h.audit); !strings.Contains(string(a), "TokenIssueTime cut-off") {
		t.Error("the fallback is not in the audit log")
	}
	marked, err := h.st.GetLease(ctx, before.ID)
	if err != nil || !marked.NextAttempt.Equal(cut.Add(time.Second)) {
		t.Fatalf("live lease after the fallback: %v, renew mark %s; want a mark at the cut-off plus 1 s (%s)", err, marked.NextAttempt, cut.Add(time.Second))
	}

	h.b.Tick(ctx) // before the cut-off: a re-mint would be denied at once
	if l, _ := h.st.GetLease(ctx, before.ID); l.ExternalID != before.ExternalID {
		t.Fatal("the live session was re-minted before the cut-off passed")
	}

	h.offset.Add(int64(cut.Sub(h.now()) + 2*time.Second))
	h.b.Tick(ctx)
	after, err := h.st.GetLease(ctx, before.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.ExternalID == before.ExternalID || !after.IssuedAt.After(cut) || !after.NextAttempt.IsZero() {
		t.Fatalf("after the cut-off: key %s issued %s (mark %s); want a new key issued after the cut-off %s, mark cleared",
			after.ExternalID, after.IssuedAt, after.NextAttempt, cut)
	}
	id, sk, tok := h.awsCreds(live)
	if id != after.ExternalID {
		t.Fatalf("session dir holds key %s, the store %s", id, after.ExternalID)
	}
	if !h.s3Works(id, sk, tok) {
		t.Fatal("the re-minted credentials do not work")
	}
	h.b.Tick(ctx)
	if l, _ := h.st.GetLease(ctx, before.ID); l.ExternalID != after.ExternalID {
		t.Fatal("re-minted again on the next tick: the early-renewal mark was not cleared")
	}
}

// policyCutoff is the TokenIssueTime cut-off on agent-s3's deny policy,
// which must hold no per-session deny.
func policyCutoff(t *testing.T, h *harness) time.Time {
	t.Helper()
	raw, ok := h.iam.Policy("agent-s3", awssts.PolicyName)
	if !ok {
		t.Fatal("no deny policy on agent-s3")
	}
	var d struct {
		Statement []struct {
			Sid       string
			Condition map[string]map[string]any
		}
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatal(err)
	}
	var cut time.Time
	for _, st := range d.Statement {
		if strings.HasPrefix(st.Sid, "CredbrokerRevokedUntil") {
			t.Errorf("per-session deny %s left after the fallback", st.Sid)
		}
		if st.Sid == "CredbrokerRevokeIssuedBefore" {
			v, _ := st.Condition["DateLessThan"]["aws:TokenIssueTime"].(string)
			cut, _ = time.Parse(time.RFC3339, v)
		}
	}
	if cut.IsZero() {
		t.Fatalf("no TokenIssueTime cut-off in %s", raw)
	}
	return cut
}
