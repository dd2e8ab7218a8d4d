package kube_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// rejectLimit bounds the wait for a revoked token to be refused: the API
// server caches a successful token check for 10 s (DESIGN.md); 15 s leaves
// room for a loaded machine.
const rejectLimit = 15 * time.Second

// podReaderRole is a credbroker role bound to the kubetest pod-reader Role.
func podReaderRole(ns string) configs.Role {
	return configs.Role{
		Name: "agent-k8s", TTL: configs.Duration(30 * time.Minute), MaxTTL: configs.Duration(time.Hour),
		Kube: &configs.KubeRole{Namespace: ns, Role: "pod-reader", TokenTTL: configs.Duration(time.Hour)},
	}
}

// env is one test's namespace with a pod-reader Role and a provider that
// acts as the kubetest admin (the broker's static token).
type env struct {
	srv  *kubetest.Server
	ns   string
	prov *kube.Provider
	logs *syncbuf.Buffer
}

func newEnv(t *testing.T, roles ...configs.Role) *env {
	t.Helper()
	srv := kubetest.Shared(t)
	ns := srv.Namespace(t)
	if err := srv.CreateRole(context.Background(), kubetest.PodReader(ns)); err != nil {
		t.Fatal(err)
	}
	if len(roles) == 0 {
		roles = []configs.Role{podReaderRole(ns)}
	}
	e := &env{srv: srv, ns: ns, logs: &syncbuf.Buffer{}}
	e.prov = e.provider(t, kubetest.AdminContext, roles...)
	return e
}

// provider builds a provider from the server's kubeconfig and context, the
// way the daemon does, logging into e.logs.
func (e *env) provider(t *testing.T, context string, roles ...configs.Role) *kube.Provider {
	t.Helper()
	rm := map[string]configs.Role{}
	for _, r := range roles {
		rm[r.Name] = r
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	p, err := kube.New(configs.KubeProvider{Kubeconfig: e.srv.Kubeconfig, Context: context}, rm, log)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// client is a clientset that presents the grant's token.
func (e *env) client(t testing.TB, g providers.Grant) kubernetes.Interface {
	t.Helper()
	c, err := kubernetes.NewForConfig(e.srv.TokenConfig(g.Files[kube.TokenFile].Reveal()))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *env) listPods(ctx context.Context, t testing.TB, g providers.Grant, ns string) error {
	_, err := e.client(t, g).CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	return err
}

// waitRejected polls with the grant's token until the API server answers
// 401, and returns how long that took.
func (e *env) waitRejected(ctx context.Context, t testing.TB, g providers.Grant) (time.Duration, error) {
	start := time.Now()
	c := e.client(t, g)
	for {
		_, err := c.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
		if apierrors.IsUnauthorized(err) {
			return time.Since(start), nil
		}
		if time.Since(start) > rejectLimit {
			return time.Since(start), fmt.Errorf("token still accepted %s after revocation (last answer: %v)", rejectLimit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// refusal is when a revoked token was first refused, and when with 401.
type refusal struct {
	refused, unauthorized time.Duration
}

// waitRefusals polls every 20 ms with the grant's token from start until
// the API server answers 401, and returns when it first refused the
// request at all (403: authenticated from its token cache, but the
// binding is gone; or 401) and when with 401.
func (e *env) waitRefusals(ctx context.Context, t testing.TB, g providers.Grant, start time.Time) (refusal, error) {
	var r refusal
	c := e.client(t, g)
	for {
		_, err := c.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
		at := time.Since(start)
		if r.refused == 0 && (apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err)) {
			r.refused = at
		}
		if apierrors.IsUnauthorized(err) {
			r.unauthorized = at
			return r, nil
		}
		if time.Since(start) > rejectLimit {
			return r, fmt.Errorf("token still authenticated %s after revocation (last answer: %v)", rejectLimit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitRefused waits until the grant's token is refused at all (403 or
// 401), at most rejectLimit.
func (e *env) waitRefused(ctx context.Context, t testing.TB, g providers.Grant) error {
	start := time.Now()
	c := e.client(t, g)
	for {
		_, err := c.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{})
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return nil
		}
		if time.Since(start) > rejectLimit {
			return fmt.Errorf("token still accepted %s after revocation (last answer: %v)", rejectLimit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// objectsLeft lists the session objects the broker left in ns.
func (e *env) objectsLeft(ctx context.Context, t testing.TB, sessionID string) []string {
	t.Helper()
	sel := metav1.ListOptions{LabelSelector: kube.LabelSession + "=" + sessionID}
	var left []string
	sas, err := e.srv.Admin.CoreV1().ServiceAccounts(e.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range sas.Items {
		left = append(left, "serviceaccount/"+o.Name)
	}
	secs, err := e.srv.Admin.CoreV1().Secrets(e.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range secs.Items {
		left = append(left, "secret/"+o.Name)
	}
	rbs, err := e.srv.Admin.RbacV1().RoleBindings(e.ns).List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range rbs.Items {
		left = append(left, "rolebinding/"+o.Name)
	}
	crbs, err := e.srv.Admin.RbacV1().ClusterRoleBindings().List(ctx, sel)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range crbs.Items {
		left = append(left, "clusterrolebinding/"+o.Name)
	}
	return left
}

// providerAsServiceAccount builds a provider whose own identity is the
// service account name in e.ns (for tests of the broker's permissions).
func (e *env) providerAsServiceAccount(t *testing.T, name string, roles ...configs.Role) *kube.Provider {
	t.Helper()
	secs := int64(3600)
	tr, err := e.srv.Admin.CoreV1().ServiceAccounts(e.ns).CreateToken(context.Background(), name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(e.srv.TokenConfig(tr.Status.Token))
	if err != nil {
		t.Fatal(err)
	}
	rm := map[string]configs.Role{}
	for _, r := range roles {
		rm[r.Name] = r
	}
	log := slog.New(slog.NewJSONHandler(e.logs, nil))
	return kube.NewWithClient(c, kube.Cluster{Server: e.srv.URL, CAData: e.srv.CAData}, configs.KubeProvider{}, rm, log)
}
