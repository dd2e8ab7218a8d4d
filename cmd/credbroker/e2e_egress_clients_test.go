package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// Names the clients test reaches its providers by (broker.egress.hosts
// maps each to 127.0.0.1; kubernetes.default.svc is in the test
// kube-apiserver's certificate).
const (
	vaultHost = "vault.credbroker.test"
	minioHost = "minio.credbroker.test"
	kubeHost  = "kubernetes.default.svc"
)

// TestEgressClientsBwrap: the official clients, inside bubblewrap with
// nothing but the session's env and files, reach their providers only
// through the session's egress gateway: the vault CLI reads the role's
// secret, the AWS CLI lists the allowed bucket on MinIO (and is refused
// the other), kubectl lists pods in the role's namespace. The providers
// are configured by broker.egress.hosts names, which the daemon's own
// clients dial through the same map, so the session env points the agent
// at names the gateway resolves (its 127.0.0.1 is its own); the role lists
// no rule: provider endpoints are allowed. Each client's connections are
// audit records naming the provider's host.
func TestEgressClientsBwrap(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "bwrap")
	if _, err := os.Stat("/usr/bin/aws"); err != nil {
		t.Fatalf("the AWS CLI is not installed at /usr/bin/aws: run `make testbins` (installs Debian's awscli)")
	}
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	e := newE2EAt(t, srv, strings.Replace(srv.Addr, "127.0.0.1", vaultHost, 1))
	minio := miniotest.Start(t)
	kube := kubetest.Shared(t)
	ns := kube.Namespace(t)
	if err := kube.CreateRole(context.Background(), kubetest.PodReader(ns)); err != nil {
		t.Fatal(err)
	}
	e.addSecret(t, miniotest.RootPassword)
	e.addSecret(t, kube.Token(kubetest.AdminUser))
	e.namedProviders(t, minio, kube)
	e.egressConfig(t, "agent-clients", []string{vaultHost, minioHost, kubeHost}, nil, fmt.Sprintf(`    vault:
      policies: [agent-readonly]
    aws:
      role_arn: arn:aws:iam::000000000000:role/agent-s3
      max_duration: 15m
      policy: '%s'
    kube:
      namespace: %s
      role: pod-reader
      token_ttl: 10m
`, miniotest.ReadOnlyPolicy, ns))
	e.serveWithMinIO(t)

	// The vault binary is not under /usr: a hard link in the project (on
	// the same disk as the test binaries' cache) makes it visible.
	base, err := os.MkdirTemp("", "credbroker-egress-clients-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	project := e.sandboxProject(t, base, nil, map[string]string{"vault": vaulttest.Binary()})

	script := `echo "vault: $(/workspace/vault kv get -field=region secret/agent/readonly/config 2>&1)"
echo "aws: $(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 ls s3://` + miniotest.Readable + `/ 2>&1 | tr '\n' ' ')"
echo "aws-other: $(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 ls s3://` + miniotest.Other + `/ 2>&1 | tr '\n' ' ')"
echo "kubectl: $(kubectl get pods 2>&1)"
echo "addrs: $VAULT_ADDR $AWS_ENDPOINT_URL"`
	p := e.start(t, "run clients (bwrap)", nil, "run", "--role", "agent-clients", "--sandbox", "bwrap",
		"--project", project, "--uid", strconv.Itoa(nobody), "--", "sh", "-c", script)
	if code := p.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	got := lines(p.stdout.String())
	checks := []struct {
		key, want string
		ok        func(string) bool
	}{
		{"vault", "eu-west-1", func(s string) bool { return s == "eu-west-1" }},
		{"aws", "a listing with " + miniotest.Object, func(s string) bool { return strings.Contains(s, miniotest.Object) }},
		{"aws-other", "AccessDenied", func(s string) bool { return strings.Contains(s, "AccessDenied") }},
		{"kubectl", "No resources found in " + ns, func(s string) bool { return strings.Contains(s, "No resources found in "+ns+" namespace") }},
		{"addrs", "the hosts names", func(s string) bool {
			return strings.Contains(s, vaultHost) && strings.Contains(s, minioHost) && !strings.Contains(s, "127.0.0.1")
		}},
	}
	for _, c := range checks {
		if !c.ok(got[c.key]) {
			t.Errorf("%s: %q, want %s", c.key, got[c.key], c.want)
		}
	}
	t.Logf("agent output:\n%s\nstderr:\n%s", p.stdout, p.stderr)
	log, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{vaultHost, minioHost, kubeHost} {
		n := 0
		for l := range strings.Lines(string(log)) {
			if strings.Contains(l, `"event":"egress.connection"`) && strings.Contains(l, `"`+host+`"`) && strings.Contains(l, "allow") {
				n++
			}
		}
		if n == 0 {
			t.Errorf("no allowed egress.connection record for %s: the client did not go through the gateway", host)
		}
	}
}

// namedProviders adds the AWS provider (MinIO) and the Kubernetes
// provider to e's config, both reached by the names broker.egress.hosts
// maps to 127.0.0.1 (minioHost, kubeHost), as sandboxed clients must
// name them for their proxy to carry them.
func (e *e2e) namedProviders(t *testing.T, minio *miniotest.Server, kube *kubetest.Server) {
	t.Helper()
	kc, err := os.ReadFile(kube.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(e.dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(strings.ReplaceAll(string(kc), "https://127.0.0.1:", "https://"+kubeHost+":")), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	minioURL := strings.Replace(minio.URL, "127.0.0.1", minioHost, 1)
	provs := fmt.Sprintf("providers:\n  aws:\n    region: %s\n    sts_endpoint: %s\n    endpoint_url: %s\n    revocation: minio-revoke-tokens\n  kube:\n    kubeconfig: %s\n    context: %s\n",
		miniotest.Region, minioURL, minioURL, kubeconfig, kubetest.AdminContext)
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "providers:\n", provs, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// serveWithMinIO starts the daemon with MinIO's root keys as its AWS
// identity (and no AWS files), plus env.
func (e *e2e) serveWithMinIO(t *testing.T, env ...string) *proc {
	t.Helper()
	none := filepath.Join(e.dir, "no-such-aws-file")
	return e.serve(t, append([]string{"AWS_ACCESS_KEY_ID=" + miniotest.RootUser, "AWS_SECRET_ACCESS_KEY=" + miniotest.RootPassword,
		"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none}, env...)...)
}
