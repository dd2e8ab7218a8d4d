package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// apiHost is the injected-secret test server's name (→ 127.0.0.1).
const apiHost = "api.credbroker.test"

// proxyAPI serves https://apiHost with a certificate of ca and answers
// "api-ok" only to requests carrying key in x-api-key.
func proxyAPI(t *testing.T, ca *testCA, key string) int {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("x-api-key") != key {
			http.Error(w, "api-denied", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "api-ok")
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t, apiHost)}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return int(netip.MustParseAddrPort(srv.Listener.Addr().String()).Port())
}

// plainHTTP serves body over plain HTTP on 127.0.0.1: the "pod port" the
// kubelet stand-in forwards to.
func plainHTTP(t *testing.T, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestProxyDeliveryBwrap: with delivery: proxy, the official clients in
// bubblewrap work with only placeholders: the vault CLI reads a secret and
// looks its token up (the answer shows the placeholder, not the token),
// kubectl lists pods, reads a pod's logs, execs into it (with stdin) and
// forwards its port through the session CA (the upgrades pass the gateway
// after the token swap; the pod runs on kubetest's kubelet stand-in),
// curl reaches an HTTPS API with an injected key (swapped, and added when
// absent). Nothing the sandbox saw (env, files, every answer) holds a
// real value: the leak guard, which fingerprints both, finds only
// placeholders in it. Each
// placeholder is refused by Vault and kube-apiserver directly. A
// placeholder sent to another bound host is refused and audited, and
// the session is revoked.
func TestProxyDeliveryBwrap(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "bwrap")
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	e := newE2EAt(t, srv, strings.Replace(srv.Addr, "127.0.0.1", vaultHost, 1))
	minio := miniotest.Start(t)
	kube := kubetest.Shared(t)
	ns := kube.Namespace(t)
	if err := kube.CreateRole(context.Background(), kubetest.PodOperator(ns)); err != nil {
		t.Fatal(err)
	}
	// The pod kubectl reads logs from, execs into and forwards a port of
	// (through the gateway and the real API server) runs on the kubelet
	// stand-in: no real kubelet can run here (kubetest.Kubelet says why).
	kubelet := kube.StartKubelet(t)
	kubelet.Pod(t, kube, ns, "web")
	kubelet.Forward(80, plainHTTP(t, "forwarded-ok"))
	e.addSecret(t, kube.Token(kubetest.AdminUser))
	e.addSecret(t, miniotest.RootPassword)
	b := make([]byte, 16)
	rand.Read(b)
	apiKey := "sk-test-" + hex.EncodeToString(b)
	e.addSecret(t, apiKey)
	if _, err := e.tokenClient(t, vaulttest.RootToken).Logical().Write("secret/data/agent/readonly/apikey",
		map[string]any{"data": map[string]any{"key": apiKey}}); err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	apiPort := proxyAPI(t, ca, apiKey)
	// The daemon trusts the API's test CA as a system root.
	system, err := os.ReadFile("/etc/ssl/certs/ca-certificates.crt")
	if err != nil {
		t.Fatalf("read the system CA bundle: %v (install Debian's ca-certificates)", err)
	}
	roots := filepath.Join(e.dir, "roots.pem")
	if err := os.WriteFile(roots, append(append(system, '\n'), ca.PEM...), 0o644); err != nil {
		t.Fatal(err)
	}
	e.namedProviders(t, minio, kube)
	api := apiHost + ":" + strconv.Itoa(apiPort)
	e.egressConfig(t, "agent-proxy", []string{vaultHost, kubeHost, apiHost, minioHost}, []string{api}, fmt.Sprintf(`    delivery: proxy
    vault:
      policies: [agent-readonly]
    aws:
      role_arn: arn:aws:iam::000000000000:role/agent-s3
      max_duration: 15m
      policy: '%s'
    kube:
      namespace: %s
      role: pod-operator
      token_ttl: 10m
    inject:
      - env: API_KEY
        path: secret/data/agent/readonly/apikey
        field: key
        hosts: [%q]
        header: "x-api-key: {}"
`, readWritePolicy, ns, api))
	e.serveWithMinIO(t, "SSL_CERT_FILE="+roots)

	base, err := os.MkdirTemp("", "credbroker-proxy-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	project := e.sandboxProject(t, base, nil, map[string]string{"vault": vaulttest.Binary()})
	url := "https://" + api + "/check"
	script := `echo "vault: $(/workspace/vault kv get -field=region secret/agent/readonly/config 2>&1)"
echo "lookup: $(/workspace/vault token lookup -format=json 2>&1 | tr -d '\n ')"
echo "kubectl: $(kubectl get pods -o name 2>&1)"
echo "kube-logs: $(kubectl logs web 2>&1 | tr '\n' '|')"
echo "kube-exec: $(kubectl exec web -- echo exec ok 2>&1)"
echo "kube-stdin: $(echo through stdin | kubectl exec -i web -- cat 2>&1)"
kubectl port-forward pod/web 18080:80 >/tmp/pf.log 2>&1 & pfpid=$!
i=0; until pf=$(curl -sS --noproxy '*' http://127.0.0.1:18080/ 2>/dev/null) || [ $i -ge 150 ]; do i=$((i+1)); sleep 0.1; done
echo "kube-pf: $pf"; kill $pfpid
echo "api: $(curl -sS -H "x-api-key: $API_KEY" ` + url + ` 2>&1)"
echo "api-added: $(curl -sS ` + url + ` 2>&1)"
head -c 52428800 /dev/urandom > /tmp/big
echo "aws-ls: $(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 ls s3://` + miniotest.Readable + `/ 2>&1 | tr '\n' ' ')"
echo "aws-up: $(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --only-show-errors /tmp/big s3://` + miniotest.Readable + `/big.bin 2>&1 && echo uploaded)"
echo "aws-down: $(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 cp --only-show-errors s3://` + miniotest.Readable + `/big.bin /tmp/big2 2>&1 && cmp /tmp/big /tmp/big2 && echo same)"
echo "aws-other: $(aws --endpoint-url "$AWS_ENDPOINT_URL" s3 ls s3://` + miniotest.Other + `/ 2>&1 | tr '\n' ' ')"
echo "boto3: $(python3 -c 'import boto3,os; c=boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"]); print(sorted(o["Key"] for o in c.list_objects_v2(Bucket="` + miniotest.Readable + `")["Contents"]))' 2>&1 | tail -1)"
echo "==== env"; env
echo "==== files"; find "$CREDBROKER_SESSION_DIR" -type f | while read -r f; do cat "$f"; echo; done
echo "==== leak"
echo "leak: $(curl -sS -o /dev/null -w '%{http_code}' -H "x-other: $VAULT_TOKEN" ` + url + ` 2>&1)"
sleep 1
echo "after-leak: $(/workspace/vault kv get -field=region secret/agent/readonly/config >/dev/null 2>&1 && echo works || echo refused)"`
	p := e.start(t, "run clients (bwrap, proxy)", nil, "run", "--role", "agent-proxy", "--sandbox", "bwrap",
		"--project", project, "--uid", strconv.Itoa(nobody), "--", "sh", "-c", script)
	code := p.wait(t, 3*time.Minute)
	out := p.stdout.String()
	if code != 0 && !strings.Contains(out, "after-leak:") {
		t.Fatalf("exit status %d\nstderr:\n%s", code, p.stderr)
	}
	got := lines(out)
	env := map[string]string{}
	for l := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok && (k == "VAULT_TOKEN" || k == "API_KEY") {
			env[k] = v
		}
	}
	checks := []struct {
		key, want string
		ok        func(string) bool
	}{
		{"vault", "eu-west-1", func(s string) bool { return s == "eu-west-1" }},
		{"lookup", "the placeholder as the token's id", func(s string) bool {
			return env["VAULT_TOKEN"] != "" && strings.Contains(s, `"id":"`+env["VAULT_TOKEN"]+`"`)
		}},
		{"kubectl", "pod/web", func(s string) bool { return s == "pod/web" }},
		{"kube-logs", "the stand-in's log lines", func(s string) bool { return s == strings.Join(kubelet.LogLines, "|")+"|" }},
		{"kube-exec", "exec ok", func(s string) bool { return s == "exec ok" }},
		{"kube-stdin", "through stdin", func(s string) bool { return s == "through stdin" }},
		{"kube-pf", "forwarded-ok", func(s string) bool { return s == "forwarded-ok" }},
		{"api", "api-ok", func(s string) bool { return s == "api-ok" }},
		{"api-added", "api-ok", func(s string) bool { return s == "api-ok" }},
		{"aws-ls", "a listing with " + miniotest.Object, func(s string) bool { return strings.Contains(s, miniotest.Object) }},
		{"aws-up", "uploaded", func(s string) bool { return s == "uploaded" }},
		{"aws-down", "same", func(s string) bool { return s == "same" }},
		{"aws-other", "AccessDenied", func(s string) bool { return strings.Contains(s, "AccessDenied") }},
		{"boto3", "big.bin and " + miniotest.Object, func(s string) bool {
			return strings.Contains(s, "'big.bin'") && strings.Contains(s, "'"+miniotest.Object+"'")
		}},
		{"leak", "403", func(s string) bool { return s == "403" }},
		{"after-leak", "refused", func(s string) bool { return s == "refused" }},
	}
	for _, c := range checks {
		if !c.ok(got[c.key]) {
			t.Errorf("%s: %q, want %s", c.key, got[c.key], c.want)
		}
	}
	if !strings.HasPrefix(env["API_KEY"], "cbph_") || strings.Contains(out, apiKey) {
		t.Errorf("API_KEY in the sandbox is not a placeholder, or the real key reached it")
	}
	e.requireNoRealSecrets(t, out)

	// Each placeholder straight at its server: refused.
	e.requireTokenRejected(t, env["VAULT_TOKEN"])
	var awsPH struct{ AccessKeyID, SecretAccessKey, SessionToken string }
	for l := range strings.Lines(out) {
		if strings.Contains(l, `"AccessKeyId"`) {
			awsPH.AccessKeyID = jsonField(l)
		} else if strings.Contains(l, `"SecretAccessKey"`) {
			awsPH.SecretAccessKey = jsonField(l)
		} else if strings.Contains(l, `"SessionToken"`) {
			awsPH.SessionToken = jsonField(l)
		}
	}
	if !strings.HasPrefix(awsPH.AccessKeyID, "ASIA") || awsPH.SecretAccessKey == "" || awsPH.SessionToken == "" {
		t.Fatalf("no AWS placeholders in the sandbox's credentials.json (key id %q)", awsPH.AccessKeyID)
	}
	if _, err := minio.S3(awsPH.AccessKeyID, awsPH.SecretAccessKey, awsPH.SessionToken).ListObjectsV2(context.Background(),
		&s3.ListObjectsV2Input{Bucket: aws.String(miniotest.Readable)}); err == nil {
		t.Errorf("the AWS placeholders work straight against MinIO")
	}
	kubeTok := ""
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "eyJ") && strings.Count(strings.TrimSpace(l), ".") == 2 {
			kubeTok = strings.TrimSpace(l)
		}
	}
	if kubeTok == "" {
		t.Fatal("no kube token placeholder in the sandbox's files")
	}
	cs, err := kubernetes.NewForConfig(kube.TokenConfig(kubeTok))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("the kube placeholder used directly: %v, want Unauthorized", err)
	}

	log, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), `"event":"proxy.leak_attempt"`) || !strings.Contains(string(log), "proxy: placeholder of the vault token") {
		t.Errorf("no proxy.leak_attempt record and leak revocation in the audit log")
	}
	for l := range strings.Lines(string(log)) {
		if strings.Contains(l, `"event":"egress.connection"`) && strings.Contains(l, `"reason"`) {
			t.Logf("egress record with a reason: %s", l)
		}
	}
	t.Logf("agent output (placeholders only):\n%s", out)
}

// readWritePolicy lets a session read and write miniotest.Readable.
const readWritePolicy = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:GetObject","s3:PutObject","s3:ListBucket","s3:AbortMultipartUpload","s3:ListMultipartUploadParts"],"Resource":["arn:aws:s3:::` + miniotest.Readable + `","arn:aws:s3:::` + miniotest.Readable + `/*"]}]}`

// jsonField returns the string value of a `"Key": "value",` line.
func jsonField(l string) string {
	_, v, _ := strings.Cut(l, ":")
	return strings.Trim(strings.TrimSpace(v), `",`)
}

// requireNoRealSecrets runs the leak guard over what the sandbox saw: it
// fingerprints every real value the broker issued and every placeholder,
// so any finding that is not a placeholder is a real value that reached
// the sandbox. At least one placeholder must be found (the scan works).
func (e *e2e) requireNoRealSecrets(t *testing.T, seen string) {
	t.Helper()
	f := filepath.Join(e.dir, "sandbox-saw.txt")
	if err := os.WriteFile(f, []byte(seen), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cbBin, "--config", e.config, "guard", "scan", "--no-revoke", "-o", "json", f)
	cmd.Env = baseEnv()
	raw, _ := cmd.Output() // exit 1 when something is found
	var res struct {
		Findings []struct {
			What string `json:"what"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Fatalf("guard scan output: %v", err)
	}
	placeholders := 0
	for _, fd := range res.Findings {
		if strings.HasPrefix(fd.What, "placeholder for ") {
			placeholders++
			continue
		}
		t.Errorf("a real %s reached the sandbox", fd.What)
	}
	if placeholders == 0 {
		t.Errorf("the guard found no placeholder in what the sandbox saw: the scan proves nothing")
	}
}

// TestProxyPlaceholderDiesAtEnd: a Vault placeholder works through the
// session's gateway (Vault's answer shows the placeholder, not the token)
// until `session end`; no request succeeds once the command returned. The
// time from the command's start to the first refused request is logged
// (docs/proxy-mode.md).
func TestProxyPlaceholderDiesAtEnd(t *testing.T) {
	t.Parallel()
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	addr := strings.Replace(srv.Addr, "127.0.0.1", vaultHost, 1)
	e := newE2EAt(t, srv, addr)
	e.egressConfig(t, "agent-proxy-vault", []string{vaultHost}, nil, "    delivery: proxy\n    vault:\n      policies: [agent-readonly]\n")
	e.serve(t)
	var si struct {
		ID           string `json:"id"`
		Dir          string `json:"dir"`
		EgressSocket string `json:"egress_socket"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI(t, "session", "start", "--role", "agent-proxy-vault", "-o", "json").stdout), &si); err != nil {
		t.Fatal(err)
	}
	ph, err := os.ReadFile(filepath.Join(si.Dir, "vault", "token"))
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{
		Proxy: http.ProxyURL(&neturl.URL{Scheme: "http", Host: "gateway"}),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", si.EgressSocket)
		},
		DisableKeepAlives: true,
	}}
	lookup := func() (int, string) {
		req, _ := http.NewRequest(http.MethodGet, addr+"/v1/auth/token/lookup-self", nil)
		req.Header.Set("X-Vault-Token", string(ph))
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := lookup()
	if code != http.StatusOK || !strings.Contains(body, `"id":"`+string(ph)+`"`) {
		t.Fatalf("lookup-self through the gateway: %d, want 200 with the placeholder as id", code)
	}
	// sent is when the request left, at when its answer (or error) came.
	type try struct {
		sent, at time.Time
		ok       bool
	}
	tries := make(chan try, 100000)
	stop := make(chan struct{})
	go func() {
		defer close(tries)
		for {
			select {
			case <-stop:
				return
			default:
			}
			sent := time.Now()
			c, _ := lookup()
			tries <- try{sent, time.Now(), c == http.StatusOK}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	e.mustCLI(t, "session", "end", si.ID)
	returned := time.Now()
	time.Sleep(100 * time.Millisecond)
	close(stop)
	var firstFail time.Time
	after := 0
	for tr := range tries {
		if tr.sent.After(returned) {
			after++
		}
		if tr.ok && tr.sent.After(returned) {
			t.Fatalf("a request with the placeholder sent %v after `session end` returned succeeded", tr.sent.Sub(returned))
		}
		if !tr.ok && tr.at.After(start) && firstFail.IsZero() {
			firstFail = tr.at
		}
	}
	if firstFail.IsZero() || after == 0 {
		t.Fatalf("no request failed after the session ended (%d sent after it returned)", after)
	}
	t.Logf("placeholder refused %v after `session end` started (the command took %v)", firstFail.Sub(start), returned.Sub(start))
}

// TestProxySessionEndsAtRestart: a proxy-delivered session's real
// credentials lived only in the daemon's memory, so a restarted daemon
// ends it (and revokes its token) instead of carrying it on, while a
// file-delivered session of the same run carries on.
func TestProxySessionEndsAtRestart(t *testing.T) {
	t.Parallel()
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	e := newE2EAt(t, srv, strings.Replace(srv.Addr, "127.0.0.1", vaultHost, 1))
	e.egressConfig(t, "agent-proxy-vault", []string{vaultHost}, nil, "    delivery: proxy\n    vault:\n      policies: [agent-readonly]\n")
	d := e.serve(t)
	start := func(role string) (id string) {
		var si struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal([]byte(e.mustCLI(t, "session", "start", "--role", role, "-o", "json").stdout), &si); err != nil {
			t.Fatal(err)
		}
		return si.ID
	}
	proxied, filed := start("agent-proxy-vault"), start("agent-readonly")
	before := e.liveSessionTokens(t)
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("daemon exit %d", code)
	}
	e.serve(t)
	show := func(id string) (state, reason string) {
		var si struct {
			State     string `json:"state"`
			EndReason string `json:"end_reason"`
		}
		if err := json.Unmarshal([]byte(e.mustCLI(t, "session", "show", id, "-o", "json").stdout), &si); err != nil {
			t.Fatal(err)
		}
		return si.State, si.EndReason
	}
	if st, why := show(proxied); st != "ended" || !strings.Contains(why, "proxy-delivered") {
		t.Errorf("proxy-delivered session after a restart: %s (%q), want ended by the restart", st, why)
	}
	if st, _ := show(filed); st != "active" {
		t.Errorf("file-delivered session after a restart: %s, want active", st)
	}
	if after := e.liveSessionTokens(t); after != before-1 {
		t.Errorf("%d live session tokens after the restart, want %d (the proxied one revoked)", after, before-1)
	}
}
