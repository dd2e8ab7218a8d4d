package kubetest

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

var shared struct {
	once sync.Once
	srv  *Server
	err  error
}

// Shared returns the package's server, starting it on first use. A missing
// binary or a failed start fails the test (never skips it).
func Shared(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() {
		shared.srv, shared.err = Start()
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "kubetest: etcd and kube-apiserver %s ready at %s in %s\n",
				Version, shared.srv.URL, shared.srv.StartTime.Round(10_000_000))
		}
	})
	if shared.err != nil {
		t.Fatalf("%v", shared.err)
	}
	return shared.srv
}

// Main runs the package's tests and stops the shared server afterwards;
// call it from TestMain: os.Exit(kubetest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.srv != nil {
		shared.srv.Stop()
	}
	return code
}

// Token returns the static token of user, for tests that build their own
// clients.
func (s *Server) Token(user string) string { return s.tokens[user] }

// Namespace creates a fresh namespace for one test. Namespaces are not
// deleted (no controller manager runs to finish that); the whole server is
// thrown away at the end.
func (s *Server) Namespace(t testing.TB) string {
	t.Helper()
	name := "t-" + strings.ToLower(rand.Text()[:10])
	_, err := s.Admin.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace %s: %v", name, err)
	}
	return name
}

// Apply creates the objects of a multi-document YAML manifest as admin,
// after replacing each "old" string of replace with its "new" one.
func (s *Server) Apply(t testing.TB, manifest string, replace ...string) {
	t.Helper()
	if err := s.ApplyManifest(context.Background(), manifest, replace...); err != nil {
		t.Fatal(err)
	}
}

// ApplyManifest is Apply returning an error.
func (s *Server) ApplyManifest(ctx context.Context, manifest string, replace ...string) error {
	manifest = strings.NewReplacer(replace...).Replace(manifest)
	for i, doc := range strings.Split(manifest, "\n---") {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			return fmt.Errorf("manifest document %d: %w", i, err)
		}
		err = create(ctx, s.Admin, obj)
		if apierrors.IsAlreadyExists(err) && clusterScoped(obj) {
			// The server is shared by a package's tests (and kept across
			// -count runs): a ClusterRole another test applied is reused.
			continue
		}
		if err != nil {
			return fmt.Errorf("manifest document %d: %w", i, err)
		}
	}
	return nil
}

// clusterScoped reports whether obj has no namespace.
func clusterScoped(obj runtime.Object) bool {
	switch obj.(type) {
	case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *corev1.Namespace:
		return true
	}
	return false
}

func stripComments(doc string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			b.WriteString(line + "\n")
		}
	}
	return b.String()
}

// writeKubeconfig writes a kubeconfig with one context per static user,
// the way an operator would give the broker its own access.
func (s *Server) writeKubeconfig() error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: s.URL, CertificateAuthorityData: s.CAData}
	for ctx, user := range map[string]string{AdminContext: AdminUser, BrokerContext: BrokerUser} {
		cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: s.tokens[user]}
		cfg.Contexts[ctx] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: user}
	}
	cfg.CurrentContext = AdminContext
	return clientcmd.WriteToFile(*cfg, s.Kubeconfig)
}

// create sends one decoded object to the API server.
func create(ctx context.Context, c kubernetes.Interface, obj runtime.Object) error {
	o := metav1.CreateOptions{}
	var err error
	switch v := obj.(type) {
	case *corev1.Namespace:
		_, err = c.CoreV1().Namespaces().Create(ctx, v, o)
	case *corev1.ServiceAccount:
		_, err = c.CoreV1().ServiceAccounts(v.Namespace).Create(ctx, v, o)
	default:
		err = createRBAC(ctx, c, obj)
	}
	return err
}
