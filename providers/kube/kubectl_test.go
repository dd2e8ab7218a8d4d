package kube_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/providertest"
)

// writeSessionDir lays the grant's files out as the broker does (dirs
// 0500, files 0400) and returns the dir and the session env with the
// wrapper's ${CREDBROKER_SESSION_DIR} replaced by it.
func writeSessionDir(t *testing.T, g providers.Grant) (string, map[string]string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "session")
	writeFiles(t, dir, g.Files)
	env := map[string]string{}
	for k, v := range g.Env {
		env[k] = strings.Replace(v.Reveal(), "${CREDBROKER_SESSION_DIR}", dir, 1)
	}
	return dir, env
}

func writeFiles(t *testing.T, dir string, files map[string]secret.Value) {
	t.Helper()
	for rel, v := range files {
		p := filepath.Join(dir, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		// Atomic replace, as the broker's refresher does.
		tmp := p + ".tmp"
		if err := os.WriteFile(tmp, v.Bytes(), 0o400); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

// kubectl runs the kubectl on PATH with only the session's env (plus PATH
// and a throwaway HOME), from a working dir unrelated to the session dir,
// so a relative tokenFile can only work if it is resolved against the
// kubeconfig's own directory.
func kubectl(t *testing.T, env map[string]string, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("kubectl")
	if err != nil {
		t.Fatalf("kubectl not found on PATH: run `make testbins` (installs it): %v", err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKubectlWithSessionEnvOnly: kubectl, a client the project did not
// write, lists pods with nothing but KUBECONFIG from the session env, and
// is refused what the role does not allow. After a renewal it uses the new
// token file without any other change.
func TestKubectlWithSessionEnvOnly(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	s := providertest.NewSession("agent-k8s", 30*time.Minute)
	g, err := e.prov.Mint(ctx, s, podReaderRole(e.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer e.prov.Revoke(ctx, g.Leases[0])
	dir, env := writeSessionDir(t, g)
	if env["KUBECONFIG"] != filepath.Join(dir, kube.ConfigFile) {
		t.Fatalf("KUBECONFIG = %q, want the session's kube/config", env["KUBECONFIG"])
	}
	if err := os.Chmod(filepath.Join(dir, "kube"), 0o500); err != nil {
		t.Fatal(err)
	}

	out, err := kubectl(t, env, "get", "pods")
	if err != nil || !strings.Contains(out, "No resources found in "+e.ns+" namespace") {
		t.Fatalf("kubectl get pods: %v\n%s", err, out)
	}
	out, err = kubectl(t, env, "get", "secrets")
	if err == nil || !strings.Contains(out, "Forbidden") || !strings.Contains(out, "credbroker-"+s.ID) {
		t.Fatalf("kubectl get secrets: want Forbidden naming the session's service account, got %v\n%s", err, out)
	}
	out, err = kubectl(t, env, "get", "pods", "-n", "default")
	if err == nil || !strings.Contains(out, "Forbidden") {
		t.Fatalf("kubectl get pods -n default: want Forbidden, got %v\n%s", err, out)
	}
	out, err = kubectl(t, env, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
	if err != nil || out != "system:serviceaccount:"+e.ns+":credbroker-"+s.ID {
		t.Fatalf("kubectl auth whoami = %q, %v; want the session's service account", out, err)
	}

	// The refresher's renewal: a new token file, written atomically.
	ng, err := e.prov.Renew(ctx, s, g.Leases[0], providertest.Files(g.Files))
	if err != nil {
		t.Fatal(err)
	}
	if len(ng.Files) != 1 || ng.Files[kube.TokenFile].Reveal() == g.Files[kube.TokenFile].Reveal() {
		t.Fatalf("renewal files = %v; want only a new kube/token", keys(ng.Files))
	}
	if err := os.Chmod(filepath.Join(dir, "kube"), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFiles(t, dir, ng.Files)
	out, err = kubectl(t, env, "get", "pods")
	if err != nil {
		t.Fatalf("kubectl after renewal: %v\n%s", err, out)
	}
}

func keys(m map[string]secret.Value) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// TestKubeconfigShape: the session kubeconfig reaches the cluster with its
// CA, defaults to the role's namespace, reads the token from the file next
// to it, and holds no exec plugin, no inline credential and no path that
// could point outside the session dir.
func TestKubeconfigShape(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	g, err := e.prov.Mint(ctx, providertest.NewSession("agent-k8s", 10*time.Minute), podReaderRole(e.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer e.prov.Revoke(ctx, g.Leases[0])
	raw := g.Files[kube.ConfigFile].Bytes()
	cfg, err := clientcmd.Load(raw)
	if err != nil {
		t.Fatal(err)
	}
	cur := cfg.Contexts[cfg.CurrentContext]
	if cur == nil || cur.Namespace != e.ns {
		t.Fatalf("current context %q = %+v; want namespace %s", cfg.CurrentContext, cur, e.ns)
	}
	cl, user := cfg.Clusters[cur.Cluster], cfg.AuthInfos[cur.AuthInfo]
	if cl == nil || cl.Server != e.srv.URL || string(cl.CertificateAuthorityData) != string(e.srv.CAData) || cl.CertificateAuthority != "" {
		t.Errorf("cluster = %+v; want server %s with inline CA data", cl, e.srv.URL)
	}
	if len(cfg.AuthInfos) != 1 || user == nil || user.TokenFile != "token" || user.Token != "" || user.Exec != nil ||
		user.AuthProvider != nil || user.ClientCertificate != "" || user.ClientKey != "" || user.Username != "" {
		t.Errorf("user = %+v; want only tokenFile: token", user)
	}
	if strings.Contains(string(raw), g.Files[kube.TokenFile].Reveal()) {
		t.Error("kube/config contains the token")
	}
	// The relative path is resolved against the kubeconfig's directory.
	dir, env := writeSessionDir(t, g)
	rc, err := clientcmd.BuildConfigFromFlags("", env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, kube.TokenFile); rc.BearerTokenFile != want {
		t.Errorf("client-go resolved tokenFile to %q, want %q", rc.BearerTokenFile, want)
	}
}

// TestTokenExpiry: a token lives until the session ends, capped by the
// role's token_ttl, and never less than the API's 10 minutes; the lease
// records its expiry by the broker's clock, no later than the token's.
func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	cases := []struct {
		session, cap, want time.Duration
	}{
		{5 * time.Minute, time.Hour, 10 * time.Minute}, // API minimum
		{20 * time.Minute, time.Hour, 20 * time.Minute},
		{2 * time.Hour, time.Hour, time.Hour}, // role cap
		{2 * time.Hour, 15 * time.Minute, 15 * time.Minute},
	}
	for _, tc := range cases {
		role := podReaderRole(e.ns)
		role.Kube.TokenTTL = configs.Duration(tc.cap)
		g, err := e.prov.Mint(ctx, providertest.NewSession(role.Name, tc.session), role)
		if err != nil {
			t.Fatal(err)
		}
		exp := jwtExpiry(t, g.Files[kube.TokenFile].Reveal())
		if d := time.Until(g.Leases[0].ExpiresAt) - tc.want; d > 5*time.Second || d < -5*time.Second {
			t.Errorf("session %s, cap %s: lease expires in %s, want %s", tc.session, tc.cap, time.Until(g.Leases[0].ExpiresAt).Round(time.Second), tc.want)
		}
		// The token's exp has whole seconds: the lease's expiry (by the
		// broker's clock, from just before the request) is within that
		// second or a little before it, never after.
		if d := exp.Sub(g.Leases[0].ExpiresAt); d <= -time.Second || d > 5*time.Second {
			t.Errorf("session %s: token exp %v, lease %v", tc.session, exp, g.Leases[0].ExpiresAt)
		}
		if err := e.prov.Revoke(ctx, g.Leases[0]); err != nil {
			t.Fatal(err)
		}
	}
}
