package kube_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/providertest"
)

// TestBrokerWithDocumentedRBAC runs the broker as a user that holds only
// the RBAC of configs/examples/kube/broker-rbac.yaml (docs/kubernetes.md):
// Check passes, every role kind mints, revocation and crash recovery work,
// and a Role the RBAC does not let it bind fails the mint cleanly.
func TestBrokerWithDocumentedRBAC(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	manifest, err := kubetest.BrokerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	// "view" is aggregated by kube-controller-manager, which the test
	// server does not run: bind an equivalent plain ClusterRole instead.
	if err := e.srv.EnsureClusterRole(ctx, kubetest.PodViewer()); err != nil {
		t.Fatal(err)
	}
	viewer := kubetest.PodViewer().Name
	e.srv.Apply(t, manifest, "namespace: agents", "namespace: "+e.ns, "[view]", "["+viewer+"]")
	if err := e.srv.CreateRole(ctx, kubetest.SecretReader(e.ns)); err != nil {
		t.Fatal(err)
	}

	inline := configs.Role{Name: "agent-inline", Kube: &configs.KubeRole{Namespace: e.ns, TokenTTL: configs.Duration(time.Hour),
		Rules: []configs.KubeRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}}}
	view := configs.Role{Name: "viewer", Kube: &configs.KubeRole{Namespace: e.ns, ClusterRole: viewer, TokenTTL: configs.Duration(time.Hour)}}
	p := e.provider(t, kubetest.BrokerContext, podReaderRole(e.ns), inline, view)
	if err := p.Check(ctx); err != nil {
		t.Fatalf("check with the documented RBAC: %v", err)
	}
	for _, role := range []configs.Role{podReaderRole(e.ns), inline, view} {
		s := providertest.NewSession(role.Name, 10*time.Minute)
		g, err := p.Mint(ctx, s, role)
		if err != nil {
			t.Fatalf("mint %s as the minimal broker: %v", role.Name, err)
		}
		if err := e.listPods(ctx, t, g, e.ns); err != nil {
			t.Fatalf("%s: %v", role.Name, err)
		}
		if _, err := p.Renew(ctx, s, g.Leases[0], nil); err != nil {
			t.Fatalf("renew %s: %v", role.Name, err)
		}
		orphans, err := p.FindOrphans(ctx, s.ID, nil)
		if err != nil || len(orphans) != 1 {
			t.Fatalf("find orphans of %s: %v, %v", role.Name, providertest.LeasesOf(orphans), err)
		}
		if err := p.Revoke(ctx, orphans[0]); err != nil {
			t.Fatalf("revoke %s: %v", role.Name, err)
		}
		if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
			t.Errorf("revoking %s left %v", role.Name, left)
		}
	}
	if _, err := p.Mint(ctx, providertest.NewSession("x", 10*time.Minute), podReaderRole(e.ns)); err != nil {
		t.Fatal(err)
	}
	if _, err := p.RevokeAll(ctx, nil); err != nil {
		t.Fatalf("revoke all as the minimal broker: %v", err)
	}

	// A Role that exists but is not in the broker's bind list: RBAC refuses
	// the RoleBinding (escalation check); the ServiceAccount and Secret made
	// before it are deleted again.
	secrets := configs.Role{Name: "greedy", Kube: &configs.KubeRole{Namespace: e.ns, Role: "secret-reader", TokenTTL: configs.Duration(time.Hour)}}
	s := providertest.NewSession(secrets.Name, 10*time.Minute)
	_, err = p.Mint(ctx, s, secrets)
	if err == nil || !strings.Contains(err.Error(), "bind Role") || !strings.Contains(err.Error(), "forbidden") {
		t.Fatalf("binding a Role outside the broker's bind list: %v; want a forbidden binding", err)
	}
	if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
		t.Errorf("failed mint left %v", left)
	}
	t.Logf("error: %v", err)
}
