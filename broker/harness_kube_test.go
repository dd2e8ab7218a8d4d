package broker_test

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/tcpproxy"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
)

// TestMain stops the package's shared kube-apiserver and etcd (started on
// first use by withKube) after the tests.
func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// kubeEnv is a harness's Kubernetes side: the package's shared
// kube-apiserver, a namespace of the harness's own with the pod-reader
// Role, and the provider the broker uses (through Proxy, as the
// kubetest admin).
type kubeEnv struct {
	Srv *kubetest.Server
	// Admin is a clientset straight to the API server (not through the
	// proxy), for checking what the broker left.
	Admin kubernetes.Interface
	// NS is the harness's namespace; roles agent-k8s and agent-all bind
	// kubetest.PodReader in it.
	NS    string
	Proxy *tcpproxy.Proxy
	Prov  *kube.Provider
	// Kubeconfig is the broker's own kubeconfig (server: the proxy).
	Kubeconfig string
}

// withKube adds the Kubernetes provider against the package's shared real
// kube-apiserver (behind its own proxy), a fresh namespace, and the roles
// agent-k8s (Kubernetes only) and agent-all (Vault, Kubernetes, and AWS
// when withMinIO is given too). h.kube then holds what tests need to check
// the cluster.
func withKube() harnessOpt { return func(c *harnessConfig) { c.kube = true } }

// withKubeTransport wraps the Kubernetes provider's HTTP transport, so a
// test can act at a given request (cut the server off mid-mint).
func withKubeTransport(wrap func(http.RoundTripper) http.RoundTripper) harnessOpt {
	return func(c *harnessConfig) { c.kubeTransport = wrap }
}

// kubeRole binds the pod-reader Role in ns.
func kubeRole(ns string) *configs.KubeRole {
	return &configs.KubeRole{Namespace: ns, Role: "pod-reader", TokenTTL: configs.Duration(time.Hour)}
}

func (h *harness) addKube(t testing.TB, hc *harnessConfig, cfg *configs.Config, reg *providers.Registry, log *slog.Logger) {
	t.Helper()
	srv := kubetest.Shared(t)
	ke := &kubeEnv{Srv: srv, Admin: srv.Admin, NS: srv.Namespace(t)}
	if err := srv.CreateRole(context.Background(), kubetest.PodReader(ke.NS)); err != nil {
		t.Fatal(err)
	}
	ke.Proxy = tcpproxy.Start(t, strings.TrimPrefix(srv.URL, "https://"))
	addr := hc.front(t, "kube", ke.Proxy.Addr)
	ke.Kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["test"] = &clientcmdapi.Cluster{Server: "https://" + addr, CertificateAuthorityData: srv.CAData}
	kc.AuthInfos["broker"] = &clientcmdapi.AuthInfo{Token: srv.Token(kubetest.AdminUser)}
	kc.Contexts["broker"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "broker"}
	kc.CurrentContext = "broker"
	if err := clientcmd.WriteToFile(*kc, ke.Kubeconfig); err != nil {
		t.Fatal(err)
	}
	kr := kubeRole(ke.NS)
	cfg.Roles["agent-k8s"] = configs.Role{Name: "agent-k8s", TTL: configs.Duration(20 * time.Minute), MaxTTL: configs.Duration(time.Hour), Kube: kr}
	all := cfg.Roles["agent-readonly"]
	all.Name, all.Kube = "agent-all", kr
	if a, ok := cfg.Roles["agent-s3"]; ok {
		all.AWS = a.AWS
	}
	cfg.Roles["agent-all"] = all
	kcfg := configs.KubeProvider{Kubeconfig: ke.Kubeconfig}
	cfg.Providers.Kube = &kcfg
	p, err := kube.New(kcfg, cfg.Roles, log)
	if err != nil {
		t.Fatal(err)
	}
	if hc.kubeTransport != nil {
		rc, err := clientcmd.BuildConfigFromFlags("", ke.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		rc.QPS, rc.WrapTransport = -1, hc.kubeTransport
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		p = kube.NewWithClient(client, kube.Cluster{Server: rc.Host, CAData: rc.CAData}, kcfg, cfg.Roles, log)
	}
	ke.Prov = p
	reg.Register(p)
	h.kube = ke
}

// kubeToken reads a session's Kubernetes token from its dir.
func (h *harness) kubeToken(si broker.SessionInfo) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(si.Dir, kube.TokenFile))
	if err != nil {
		h.t.Fatalf("read kube token of %s: %v", si.ID, err)
	}
	h.mu.Lock()
	h.tokens = append(h.tokens, string(b))
	h.mu.Unlock()
	return string(b)
}

// kubeTokenWorks reports whether tok can still list pods in the harness's
// namespace, asking the API server directly.
func (h *harness) kubeTokenWorks(tok string) bool {
	h.t.Helper()
	c, err := kubernetes.NewForConfig(h.kube.Srv.TokenConfig(tok))
	if err != nil {
		h.t.Fatal(err)
	}
	_, err = c.CoreV1().Pods(h.kube.NS).List(context.Background(), metav1.ListOptions{})
	if err != nil && !apierrors.IsUnauthorized(err) && !apierrors.IsForbidden(err) {
		h.t.Fatalf("list pods with a session token: unexpected answer: %v", err)
	}
	return err == nil
}

// kubeRejectLimit bounds the wait for a revoked token to be refused: the
// API server caches a successful token check for 10 s.
const kubeRejectLimit = 15 * time.Second

// waitKubeRejected polls until tok is refused, or fails the test after
// kubeRejectLimit.
func (h *harness) waitKubeRejected(tok, what string) {
	h.t.Helper()
	deadline := time.Now().Add(kubeRejectLimit)
	for h.kubeTokenWorks(tok) {
		if time.Now().After(deadline) {
			h.t.Fatalf("%s: kube token still accepted %s after revocation", what, kubeRejectLimit)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// kubeObjects lists the broker-labelled ServiceAccounts, Secrets and
// RoleBindings in the harness's namespace (of session, or of every session
// when session is ""), asking the API server directly.
func (h *harness) kubeObjects(session string) []string {
	h.t.Helper()
	sel := kube.LabelManagedBy + "=" + kube.ManagedBy + "," + kube.LabelSession
	if session != "" {
		sel += "=" + session
	}
	ctx, ns, opts := context.Background(), h.kube.NS, metav1.ListOptions{LabelSelector: sel}
	var left []string
	sas, err := h.kube.Admin.CoreV1().ServiceAccounts(ns).List(ctx, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, o := range sas.Items {
		left = append(left, "serviceaccount/"+o.Name)
	}
	secs, err := h.kube.Admin.CoreV1().Secrets(ns).List(ctx, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, o := range secs.Items {
		left = append(left, "secret/"+o.Name)
	}
	rbs, err := h.kube.Admin.RbacV1().RoleBindings(ns).List(ctx, opts)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, o := range rbs.Items {
		left = append(left, "rolebinding/"+o.Name)
	}
	return left
}
