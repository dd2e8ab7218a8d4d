package broker_test

import (
	"context"
	"testing"
)

// TestKubeSessionAcrossProviders: a role with Vault, AWS and Kubernetes
// gets working credentials from all three, and session end takes every one
// of them away (the Kubernetes objects too).
func TestKubeSessionAcrossProviders(t *testing.T) {
	h := newHarness(t, withMinIO(), withKube())
	si := h.start("agent-all")
	vtok, ktok := h.token(si), h.kubeToken(si)
	id, sk, st := h.awsCreds(si)
	if !h.tokenValid(vtok) || !h.s3Works(id, sk, st) || !h.kubeTokenWorks(ktok) {
		t.Fatal("fresh agent-all session: some credential does not work")
	}
	if left := h.kubeObjects(si.ID); len(left) != 2 {
		t.Fatalf("kube objects of the session: %v, want its service account and role binding (no Secret)", left)
	}
	if _, err := h.b.EndSession(context.Background(), h.caller, si.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if h.tokenValid(vtok) || h.s3Works(id, sk, st) {
		t.Fatal("Vault or AWS credentials still work after session end")
	}
	h.waitKubeRejected(ktok, "after session end")
	if left := h.kubeObjects(""); len(left) != 0 {
		t.Fatalf("kube objects left after session end: %v", left)
	}
	h.assertNoLeaks()
}
