package kube_test

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/providertest"
)

// roleGets counts the GETs of Roles and ClusterRoles a client makes.
type roleGets struct {
	next http.RoundTripper
	n    atomic.Int32
}

func (c *roleGets) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet && (strings.Contains(r.URL.Path, "/roles/") || strings.Contains(r.URL.Path, "/clusterroles/")) {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// countedProvider is a provider acting as the kubetest admin whose Role
// GETs are counted, on a clock the test moves.
func (e *env) countedProvider(t *testing.T, role configs.Role) (*kube.Provider, *roleGets, func(time.Duration)) {
	t.Helper()
	rc := e.srv.RESTConfig(kubetest.AdminUser)
	gets := &roleGets{}
	rc.QPS = -1
	rc.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { gets.next = rt; return gets }
	client, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	p := kube.NewWithClient(client, kube.Cluster{Server: rc.Host, CAData: rc.CAData}, configs.KubeProvider{},
		map[string]configs.Role{role.Name: role}, slog.New(slog.NewJSONHandler(e.logs, nil)))
	var mu sync.Mutex
	now := time.Now()
	kube.SetNow(p, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	return p, gets, advance
}

func (e *env) mintOK(ctx context.Context, t *testing.T, p *kube.Provider, role configs.Role) {
	t.Helper()
	g, err := p.Mint(ctx, providertest.NewSession(role.Name, 10*time.Minute), role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, l := range g.Leases {
			_ = p.Revoke(context.Background(), l)
		}
	})
}

// TestNamedRoleCheckCached: a named Role found by one mint is not asked
// for by the next ones; Maintain checks it again once RoleCheckRefresh
// has passed, and a Role deleted meanwhile fails the next mint with the
// usual error; without Maintain a check is trusted for RoleCheckTTL only.
func TestNamedRoleCheckCached(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	role := podReaderRole(e.ns)
	p, gets, advance := e.countedProvider(t, role)
	expect := func(want int32, when string) {
		t.Helper()
		if got := gets.n.Load(); got != want {
			t.Fatalf("%s: %d Role GETs, want %d", when, got, want)
		}
	}
	e.mintOK(ctx, t, p, role)
	e.mintOK(ctx, t, p, role)
	expect(1, "two mints")
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	expect(1, "Maintain before RoleCheckRefresh")

	if err := e.srv.Admin.RbacV1().Roles(e.ns).Delete(ctx, "pod-reader", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	advance(kube.RoleCheckRefresh)
	if err := p.Maintain(ctx); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("Maintain with the Role deleted: %v; want it to say the Role does not exist", err)
	}
	expect(2, "Maintain after RoleCheckRefresh")
	_, err := p.Mint(ctx, providertest.NewSession(role.Name, 10*time.Minute), role)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("mint after the loop found the Role gone: %v; want it to say the Role does not exist", err)
	}
	expect(3, "mint after the Role went")

	if err := e.srv.CreateRole(ctx, kubetest.PodReader(e.ns)); err != nil {
		t.Fatal(err)
	}
	e.mintOK(ctx, t, p, role)
	expect(4, "mint after the Role came back")
	advance(kube.RoleCheckTTL)
	e.mintOK(ctx, t, p, role)
	expect(5, "mint RoleCheckTTL later, without Maintain")
}

// TestMaintainRepairsInlineRole: a widened inline-rule Role is put back
// by Maintain within RoleCheckRefresh, with no mint.
func TestMaintainRepairsInlineRole(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	role := configs.Role{Name: "agent-inline", Kube: &configs.KubeRole{
		Namespace: e.ns, TokenTTL: configs.Duration(time.Hour),
		Rules: []configs.KubeRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}}
	p, _, advance := e.countedProvider(t, role)
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	roles := e.srv.Admin.RbacV1().Roles(e.ns)
	r, err := roles.Get(ctx, kube.InlineRoleName(role.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Maintain did not create the inline-rule Role: %v", err)
	}
	r.Rules[0].Resources = append(r.Rules[0].Resources, "secrets")
	if _, err := roles.Update(ctx, r, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	advance(kube.RoleCheckRefresh)
	if err := p.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	r, err = roles.Get(ctx, kube.InlineRoleName(role.Name), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Rules[0].Resources; len(got) != 1 || got[0] != "pods" {
		t.Fatalf("inline-rule Role resources after Maintain = %v, want [pods]", got)
	}
}

var _ providers.Maintainer = (*kube.Provider)(nil)
