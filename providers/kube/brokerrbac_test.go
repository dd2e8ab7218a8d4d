package kube_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/providertest"
)

// Names of the optional parts of configs/examples/kube/broker-rbac.yaml.
const (
	inlineRulesPart  = "credbroker-broker-inline-rules"
	clusterRolesPart = "credbroker-broker-read-clusterroles"
)

// shippedRBAC reads configs/examples/kube/broker-rbac.yaml (the file, not a
// copy) and edits it only as its header tells an operator to: the
// namespace, and the bind names of the test's roles. It keeps the
// documents for which keep is true.
func shippedRBAC(t *testing.T, ns string, keep func(doc string) bool) string {
	t.Helper()
	manifest, err := kubetest.BrokerRBAC()
	if err != nil {
		t.Fatal(err)
	}
	// "view" is aggregated by kube-controller-manager, which the test
	// server does not run: bind an equivalent plain ClusterRole instead.
	manifest = strings.NewReplacer("namespace: agents", "namespace: "+ns,
		"[view]", "["+kubetest.PodViewer().Name+"]").Replace(manifest)
	var docs []string
	for doc := range strings.SplitSeq(manifest, "\n---\n") {
		if keep(doc) {
			docs = append(docs, doc)
		}
	}
	return strings.Join(docs, "\n---\n")
}

// brokerClient is a clientset with the broker's own credentials (the
// kubeconfig context the provider uses).
func (e *env) brokerClient(t *testing.T) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(e.srv.RESTConfig(kubetest.BrokerUser))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBrokerWithShippedRBAC runs the provider as a user that holds exactly
// the shipped broker RBAC, all three parts (docs/kubernetes.md): Check
// passes; every role kind mints, renews and revokes; a restarted broker
// finds and deletes what a crashed one left; revoke --all works; a Role
// outside the bind list is refused; and the broker's own credentials
// cannot read, list, watch or change any Secret.
func TestBrokerWithShippedRBAC(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if err := e.srv.EnsureClusterRole(ctx, kubetest.PodViewer()); err != nil {
		t.Fatal(err)
	}
	e.srv.Apply(t, shippedRBAC(t, e.ns, func(string) bool { return true }))
	if err := e.srv.CreateRole(ctx, kubetest.SecretReader(e.ns)); err != nil {
		t.Fatal(err)
	}
	inline := configs.Role{Name: "agent-logs", Kube: &configs.KubeRole{Namespace: e.ns, TokenTTL: configs.Duration(time.Hour),
		Rules: []configs.KubeRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}}}
	view := configs.Role{Name: "viewer", Kube: &configs.KubeRole{Namespace: e.ns, ClusterRole: kubetest.PodViewer().Name, TokenTTL: configs.Duration(time.Hour)}}
	roles := []configs.Role{podReaderRole(e.ns), inline, view}
	p := e.provider(t, kubetest.BrokerContext, roles...)
	if err := p.Check(ctx); err != nil {
		t.Fatalf("check with the shipped RBAC: %v", err)
	}

	for _, role := range roles {
		t.Run("MintRenewRevoke/"+role.Name, func(t *testing.T) {
			s := providertest.NewSession(role.Name, 10*time.Minute)
			g, err := p.Mint(ctx, s, role)
			if err != nil {
				t.Fatalf("mint as the shipped-RBAC broker: %v", err)
			}
			if err := e.listPods(ctx, t, g, e.ns); err != nil {
				t.Fatal(err)
			}
			ng, err := p.Renew(ctx, s, g.Leases[0], nil)
			if err != nil {
				t.Fatalf("renew: %v", err)
			}
			if err := e.listPods(ctx, t, ng, e.ns); err != nil {
				t.Fatalf("renewed token: %v", err)
			}
			if err := p.Revoke(ctx, ng.Leases[0]); err != nil {
				t.Fatalf("revoke: %v", err)
			}
			if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
				t.Errorf("revoke left %v", left)
			}
			if err := e.waitRefused(ctx, t, ng); err != nil {
				t.Error(err)
			}
		})
	}

	t.Run("ReconcileAfterCrash", func(t *testing.T) {
		// One broker minted a whole session, another got as far as the
		// ServiceAccount; both died before recording a lease. A restarted
		// broker (a new provider, same identity) finds and deletes both.
		full := providertest.NewSession("agent-k8s", 10*time.Minute)
		g, err := p.Mint(ctx, full, podReaderRole(e.ns))
		if err != nil {
			t.Fatal(err)
		}
		partial := providertest.NewSession("agent-k8s", 10*time.Minute)
		_, err = e.brokerClient(t).CoreV1().ServiceAccounts(e.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{
			Name: "credbroker-" + partial.ID, Namespace: e.ns,
			Labels: map[string]string{kube.LabelManagedBy: kube.ManagedBy, kube.LabelSession: partial.ID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		restarted := e.provider(t, kubetest.BrokerContext, roles...)
		for _, s := range []string{full.ID, partial.ID} {
			orphans, err := restarted.FindOrphans(ctx, s, nil)
			if err != nil || len(orphans) != 1 {
				t.Fatalf("find orphans of %s: %v, %v", s, providertest.LeasesOf(orphans), err)
			}
			if err := restarted.Revoke(ctx, orphans[0]); err != nil {
				t.Fatalf("revoke the orphan of %s: %v", s, err)
			}
			if left := e.objectsLeft(ctx, t, s); len(left) != 0 {
				t.Errorf("reconciling %s left %v", s, left)
			}
		}
		if err := e.waitRefused(ctx, t, g); err != nil {
			t.Error(err)
		}
	})

	t.Run("RevokeAll", func(t *testing.T) {
		s := providertest.NewSession("agent-k8s", 10*time.Minute)
		g, err := p.Mint(ctx, s, podReaderRole(e.ns))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.RevokeAll(ctx, nil); err != nil {
			t.Fatalf("revoke all as the shipped-RBAC broker: %v", err)
		}
		if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
			t.Errorf("revoke all left %v", left)
		}
		if err := e.waitRefused(ctx, t, g); err != nil {
			t.Error(err)
		}
	})

	t.Run("UnlistedRoleRefused", func(t *testing.T) {
		// A Role that exists but is not in the bind list: RBAC refuses the
		// RoleBinding (escalation check); the ServiceAccount made before
		// it is deleted again.
		greedy := configs.Role{Name: "greedy", Kube: &configs.KubeRole{Namespace: e.ns, Role: "secret-reader", TokenTTL: configs.Duration(time.Hour)}}
		s := providertest.NewSession(greedy.Name, 10*time.Minute)
		_, err := p.Mint(ctx, s, greedy)
		if err == nil || !strings.Contains(err.Error(), "bind Role") || !strings.Contains(err.Error(), "forbidden") {
			t.Fatalf("binding a Role outside the broker's bind list: %v; want a forbidden binding", err)
		}
		if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
			t.Errorf("failed mint left %v", left)
		}
	})

	t.Run("EscalateOnlyOnInlineRoleNames", func(t *testing.T) {
		// The inline-rules part limits escalate to credbroker-role-<role>:
		// a Role of another name with rules the broker lacks is refused,
		// on create and on update.
		roles := e.brokerClient(t).RbacV1().Roles(e.ns)
		readSecrets := kubetest.SecretReader(e.ns).Rules
		_, err := roles.Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "not-inline", Namespace: e.ns}, Rules: readSecrets}, metav1.CreateOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("the broker created a Role that reads Secrets: %v; want 403", err)
		}
		pr, err := e.srv.Admin.RbacV1().Roles(e.ns).Get(ctx, "pod-reader", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pr.Rules = append(pr.Rules, readSecrets...)
		if _, err := roles.Update(ctx, pr, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("the broker widened Role pod-reader: %v; want 403", err)
		}
	})

	t.Run("SecretsForbidden", func(t *testing.T) { secretsForbidden(t, e) })
}

// secretsForbidden: the broker's own credentials get 403 for every read of
// a Secret (get, list, watch) and every other verb on Secrets, and a
// Secret in its namespace survives its attempts.
func secretsForbidden(t *testing.T, e *env) {
	t.Helper()
	ctx := context.Background()
	name := "app-db-password"
	if _, err := e.srv.Admin.CoreV1().Secrets(e.ns).Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: e.ns, Labels: map[string]string{kube.LabelManagedBy: kube.ManagedBy}},
		StringData: map[string]string{"password": "not-for-the-broker"},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	secrets := e.brokerClient(t).CoreV1().Secrets(e.ns)
	calls := map[string]func() error{
		"get":  func() error { _, err := secrets.Get(ctx, name, metav1.GetOptions{}); return err },
		"list": func() error { _, err := secrets.List(ctx, metav1.ListOptions{}); return err },
		"watch": func() error {
			w, err := secrets.Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		},
		"deletecollection": func() error { return secrets.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}) },
		"delete":           func() error { return secrets.Delete(ctx, name, metav1.DeleteOptions{}) },
	}
	for verb, call := range calls {
		if err := call(); !apierrors.IsForbidden(err) {
			t.Errorf("%s secrets with the broker's own credentials: %v; want 403 Forbidden", verb, err)
		}
	}
	for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"} {
		r, err := e.brokerClient(t).AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{
				Namespace: e.ns, Verb: verb, Resource: "secrets",
			}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status.Allowed {
			t.Errorf("the shipped broker RBAC allows %s on secrets", verb)
		}
	}
	if _, err := e.srv.Admin.CoreV1().Secrets(e.ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
		t.Errorf("the Secret did not survive the broker's attempts: %v", err)
	}
}

// TestBrokerWithRequiredRBACOnly: with only the required part of the
// shipped RBAC (no inline-rules Role, no ClusterRole read), a broker whose
// roles bind existing Roles checks, mints and revokes; a role with inline
// rules is reported by Check and fails its mint naming the optional Role,
// leaving nothing behind.
func TestBrokerWithRequiredRBACOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.srv.Apply(t, shippedRBAC(t, e.ns, func(doc string) bool {
		return !strings.Contains(doc, "name: "+inlineRulesPart) && !strings.Contains(doc, "name: "+clusterRolesPart)
	}))
	p := e.provider(t, kubetest.BrokerContext, podReaderRole(e.ns))
	if err := p.Check(ctx); err != nil {
		t.Fatalf("check with the required RBAC only: %v", err)
	}
	s := providertest.NewSession("agent-k8s", 10*time.Minute)
	g, err := p.Mint(ctx, s, podReaderRole(e.ns))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Revoke(ctx, g.Leases[0]); err != nil {
		t.Fatal(err)
	}
	secretsForbidden(t, e)

	inline := configs.Role{Name: "agent-logs", Kube: &configs.KubeRole{Namespace: e.ns, TokenTTL: configs.Duration(time.Hour),
		Rules: []configs.KubeRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}}}}
	p = e.provider(t, kubetest.BrokerContext, podReaderRole(e.ns), inline)
	if err := p.Check(ctx); err == nil || !strings.Contains(err.Error(), "escalate roles credbroker-role-agent-logs in "+e.ns) {
		t.Errorf("check with an inline role but no inline-rules RBAC: %v; want the missing escalate named", err)
	}
	s = providertest.NewSession(inline.Name, 10*time.Minute)
	if _, err := p.Mint(ctx, s, inline); err == nil || !strings.Contains(err.Error(), inlineRulesPart) {
		t.Errorf("mint of an inline role without the inline-rules RBAC: %v; want an error naming %s", err, inlineRulesPart)
	}
	if left := e.objectsLeft(ctx, t, s.ID); len(left) != 0 {
		t.Errorf("failed mint left %v", left)
	}
}
