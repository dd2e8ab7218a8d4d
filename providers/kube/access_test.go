package kube_test

import (
	"context"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/providertest"
)

// access is one SelfSubjectAccessReview question and its expected answer.
type access struct {
	verb, resource, sub, ns string
	want                    bool
}

// checkAccess asks the API server, as the grant's token, each question.
func checkAccess(t *testing.T, c kubernetes.Interface, cases []access) {
	t.Helper()
	for _, tc := range cases {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: tc.ns, Verb: tc.verb, Resource: tc.resource, Subresource: tc.sub,
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("access review %s %s in %q: %v", tc.verb, tc.resource, tc.ns, err)
		}
		if r.Status.Allowed != tc.want {
			t.Errorf("%s %s/%s in %q: allowed=%v, want %v (%s)", tc.verb, tc.resource, tc.sub, tc.ns, r.Status.Allowed, tc.want, r.Status.Reason)
		}
	}
}

// TestTokenHasExactlyTheRolesPermissions: the session token may do what
// the pod-reader Role allows in the role's namespace, and nothing else.
func TestTokenHasExactlyTheRolesPermissions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := providertest.NewSession("agent-k8s", 10*time.Minute)
	g, err := e.prov.Mint(ctx, s, podReaderRole(e.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer e.prov.Revoke(ctx, g.Leases[0])
	ns := e.ns
	checkAccess(t, e.client(t, g), []access{
		{"get", "pods", "", ns, true},
		{"list", "pods", "", ns, true},
		{"watch", "pods", "", ns, true},
		{"get", "configmaps", "", ns, true},
		{"list", "configmaps", "", ns, false},
		{"create", "pods", "", ns, false},
		{"delete", "pods", "", ns, false},
		{"get", "pods", "log", ns, false},
		{"create", "pods", "exec", ns, false},
		{"get", "secrets", "", ns, false},
		{"list", "secrets", "", ns, false},
		{"create", "serviceaccounts", "token", ns, false},
		{"create", "rolebindings", "", ns, false},
		{"list", "pods", "", "default", false},
		{"list", "pods", "", "kube-system", false},
		{"list", "pods", "", "", false}, // all namespaces
		{"list", "namespaces", "", "", false},
	})
}

// TestClusterRoleBindings: a cluster_role is bound in the role's namespace
// only, unless cluster_wide asks for a ClusterRoleBinding; revoke --all
// removes those too.
func TestClusterRoleBindings(t *testing.T) {
	ctx := context.Background()
	srv := newEnv(t).srv
	ns := srv.Namespace(t)
	if err := srv.EnsureClusterRole(ctx, kubetest.PodViewer()); err != nil {
		t.Fatal(err)
	}
	viewer := kubetest.PodViewer().Name
	inNS := configs.Role{Name: "viewer", Kube: &configs.KubeRole{Namespace: ns, ClusterRole: viewer, TokenTTL: configs.Duration(time.Hour)}}
	wide := configs.Role{Name: "viewer-wide", Kube: &configs.KubeRole{Namespace: ns, ClusterRole: viewer, ClusterWide: true, TokenTTL: configs.Duration(time.Hour)}}
	e := &env{srv: srv, ns: ns, logs: &syncbuf.Buffer{}}
	e.prov = e.provider(t, "admin", inNS, wide)

	gNS, err := e.prov.Mint(ctx, providertest.NewSession(inNS.Name, 10*time.Minute), inNS)
	if err != nil {
		t.Fatal(err)
	}
	checkAccess(t, e.client(t, gNS), []access{
		{"list", "pods", "", ns, true},
		{"list", "pods", "", "default", false},
		{"list", "secrets", "", ns, false},
	})
	sWide := providertest.NewSession(wide.Name, 10*time.Minute)
	gWide, err := e.prov.Mint(ctx, sWide, wide)
	if err != nil {
		t.Fatal(err)
	}
	checkAccess(t, e.client(t, gWide), []access{
		{"list", "pods", "", ns, true},
		{"list", "pods", "", "default", true},
		{"list", "secrets", "", "default", false},
	})
	if _, err := e.prov.RevokeAll(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if left := e.objectsLeft(ctx, t, sWide.ID); len(left) != 0 {
		t.Errorf("revoke all left %v", left)
	}
	for _, g := range []providers.Grant{gNS, gWide} {
		if _, err := e.waitRejected(ctx, t, g); err != nil {
			t.Error(err)
		}
	}
}
