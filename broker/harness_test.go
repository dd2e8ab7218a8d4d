package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/tcpproxy"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/sqlite"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/awssts/iamtest"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// harness is a broker wired to a real Vault (behind a proxy the test can cut),
// a real SQLite store and a real tmpfs session root.
type harness struct {
	t     testing.TB
	srv   *vaulttest.Server
	proxy *tcpproxy.Proxy
	b     *broker.Broker
	st    leases.Store
	w     *agentenv.Writer
	vp    *vault.Provider

	minio      *miniotest.Server
	minioProxy *tcpproxy.Proxy
	iam        *iamtest.Server // with withIAMRevocation
	kube       *kubeEnv        // set by withKube
	dir        string
	db         string
	audit      string
	logs       *syncbuf.Buffer
	offset     atomic.Int64 // added to the broker's clock
	caller     broker.Caller

	mu     sync.Mutex
	tokens []string // every session token seen, for leak checks
}

var testRoles = map[string]configs.Role{
	"agent-readonly": {
		Name: "agent-readonly", TTL: configs.Duration(10 * time.Minute), MaxTTL: configs.Duration(time.Hour),
		Vault: &configs.VaultRole{
			Policies: []string{"agent-readonly"},
			Secrets:  []configs.VaultSecret{{Name: "config", Path: "secret/data/agent/readonly/config", Method: "read"}},
		},
	},
	"agent-dev": {
		Name: "agent-dev", TTL: configs.Duration(10 * time.Minute), MaxTTL: configs.Duration(2 * time.Hour),
		Vault: &configs.VaultRole{
			Policies: []string{"agent-dev"},
			Secrets: []configs.VaultSecret{
				{Name: "config", Path: "secret/data/agent/dev/config", Method: "read"},
				{Name: "cert", Path: "pki/issue/agent-dev", Method: "write", Data: map[string]any{"common_name": "a.credbroker.local", "ttl": "30m"}},
			},
		},
	},
	"agent-broken": {
		// Its secret is outside its policy: every start fails after the
		// token was minted, which exercises all-or-nothing.
		Name: "agent-broken", TTL: configs.Duration(10 * time.Minute), MaxTTL: configs.Duration(time.Hour),
		Vault: &configs.VaultRole{
			Policies: []string{"agent-readonly"},
			Secrets:  []configs.VaultSecret{{Name: "nope", Path: "secret/data/agent/dev/config", Method: "read"}},
		},
	},
}

type harnessOpt func(*harnessConfig)

type harnessConfig struct {
	root      string
	allowDisk bool
	// proxyDelivery serves egress gateways with proxy delivery (and adds
	// the roles agent-vault and agent-vault-proxy).
	proxyDelivery bool
	// proxyWrap, when set, wraps the broker's OpenProxy; proxyNoGateway
	// adds the proxy roles but serves no gateway.
	proxyWrap      func(broker.OpenProxyFunc) broker.OpenProxyFunc
	proxyNoGateway bool
	minio          bool
	iam            bool
	kube           bool
	extra          []providers.Provider
	// via, when set, puts something (a fault-injecting proxy) in front of
	// each server's proxy: it gets the server's name and the address to
	// forward to, and returns the address the broker dials instead.
	via func(t testing.TB, name, target string) string
	// wrap, when set, wraps every provider before the broker gets it.
	wrap func(providers.Provider) providers.Provider
	// kubeTransport, when set, wraps the Kubernetes provider's HTTP
	// transport (to act at a given request).
	kubeTransport func(http.RoundTripper) http.RoundTripper
	// host is the broker's fleet host id ("" for a single broker).
	host string
	// hooks, when set, is called at the broker's failpoints (b.at).
	hooks broker.Hooks
	// store, when set, wraps the lease store the broker gets (h.st stays
	// the bare store).
	store func(leases.Store) leases.Store
	// metrics, when set, observes the broker (broker/metrics).
	metrics broker.Metrics
}

// front is the address the broker dials for server name, whose proxy
// listens on addr.
func (c *harnessConfig) front(t testing.TB, name, addr string) string {
	if c.via == nil {
		return addr
	}
	return c.via(t, name, addr)
}

// withProvider registers an extra provider (for the broker's handling of
// provider answers that no local server produces on demand).
func withProvider(p providers.Provider) harnessOpt {
	return func(c *harnessConfig) { c.extra = append(c.extra, p) }
}

// asHost gives the broker a fleet host id, so sessions of other hosts in
// its store are another broker's.
func asHost(id string) harnessOpt { return func(c *harnessConfig) { c.host = id } }

// withMinIO adds the AWS provider against a real MinIO (behind its own
// proxy) and the roles agent-s3 (AWS only) and agent-full (Vault and AWS).
func withMinIO() harnessOpt { return func(c *harnessConfig) { c.minio = true } }

// withIAMRevocation (with withMinIO) revokes AWS sessions through IAM deny
// policies on the iamtest stand-in instead of MinIO's token revocation,
// with the broker's journal and clock, as the daemon builds it.
func withIAMRevocation() harnessOpt { return func(c *harnessConfig) { c.iam = true } }

// onDisk puts the session root on the real disk (not tmpfs).
func onDisk(t *testing.T) harnessOpt {
	return func(c *harnessConfig) { c.root = filepath.Join(t.TempDir(), "sessions") }
}

func newHarness(t testing.TB, opts ...harnessOpt) *harness {
	t.Helper()
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	tmp, err := os.MkdirTemp("/dev/shm", "cb-broker-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { chmodTree(tmp); os.RemoveAll(tmp) })
	hc := &harnessConfig{root: filepath.Join(tmp, "sessions")}
	for _, o := range opts {
		o(hc)
	}
	h := &harness{t: t, srv: srv, dir: tmp, audit: filepath.Join(t.TempDir(), "audit.log"), logs: &syncbuf.Buffer{}, caller: broker.Caller{UID: os.Geteuid(), PID: os.Getpid()}}
	h.proxy = tcpproxy.Start(t, strings.TrimPrefix(srv.Addr, "http://"))
	log := slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.db = filepath.Join(t.TempDir(), "leases.db")
	st, err := sqlite.Open(context.Background(), h.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	h.st = st
	t.Setenv("CB_TEST_BROKER_TOKEN", vaulttest.RootToken)
	vcfg := configs.VaultProvider{
		Address: "http://" + hc.front(t, "vault", h.proxy.Addr), Auth: configs.VaultAuth{TokenEnv: "CB_TEST_BROKER_TOKEN"},
		TokenRole: vaulttest.TokenRole, EpochTTL: configs.Duration(24 * time.Hour),
	}
	audit, err := broker.OpenAudit(h.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	vp, err := vault.New(context.Background(), vcfg, broker.NewJournal(st, audit, log), log)
	if err != nil {
		t.Fatal(err)
	}
	h.vp = vp
	reg := providers.NewRegistry()
	reg.Register(vp)
	roles := maps.Clone(testRoles)
	cfg := &configs.Config{Path: "test-config.yaml", Roles: roles, Providers: configs.Providers{Vault: &vcfg}}
	if hc.minio {
		h.addMinIO(t, hc, cfg, reg, log)
	}
	if hc.kube {
		h.addKube(t, hc, cfg, reg, log)
	}
	for _, p := range hc.extra {
		reg.Register(p)
	}
	if hc.wrap != nil {
		wrapped := providers.NewRegistry()
		for _, name := range reg.Names() {
			p, _ := reg.Get(name)
			wrapped.Register(hc.wrap(p))
		}
		reg = wrapped
	}
	h.w = &agentenv.Writer{Root: hc.root, AllowDisk: hc.allowDisk, Logger: log}
	var bst leases.Store = st
	if hc.store != nil {
		bst = hc.store(st)
	}
	o := broker.Options{
		Config: cfg, Store: bst, Providers: reg, Env: h.w, Audit: audit, Logger: log, Hooks: hc.hooks,
		Now:    h.now,
		HostID: hc.host, Metrics: hc.metrics,
	}
	if hc.proxyDelivery {
		h.addProxyDelivery(t, hc, cfg, &o, tmp)
	}
	h.b = broker.New(o)
	return h
}

// now is the broker's clock: real time moved on by h.offset.
func (h *harness) now() time.Time { return time.Now().Add(time.Duration(h.offset.Load())) }

func chmodTree(root string) {
	_ = filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err == nil && info.IsDir() {
			_ = os.Chmod(p, 0o700)
		}
		return nil
	})
}

func (h *harness) addMinIO(t testing.TB, hc *harnessConfig, cfg *configs.Config, reg *providers.Registry, log *slog.Logger) {
	h.minio = miniotest.Start(t)
	h.minioProxy = tcpproxy.Start(t, strings.TrimPrefix(h.minio.URL, "http://"))
	t.Setenv("AWS_ACCESS_KEY_ID", miniotest.RootUser)
	t.Setenv("AWS_SECRET_ACCESS_KEY", miniotest.RootPassword)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	acfg := configs.AWSProvider{Region: miniotest.Region, STSEndpoint: "http://" + hc.front(t, "minio", h.minioProxy.Addr),
		EndpointURL: h.minio.URL, Revocation: configs.RevokeMinIOTokens}
	awsRole := &configs.AWSRole{RoleARN: "arn:aws:iam::000000000000:role/agent-s3", MaxDuration: configs.Duration(time.Hour),
		SessionPolicy: miniotest.ReadOnlyPolicy}
	cfg.Roles["agent-s3"] = configs.Role{Name: "agent-s3", TTL: configs.Duration(20 * time.Minute), MaxTTL: configs.Duration(2 * time.Hour), AWS: awsRole}
	full := cfg.Roles["agent-readonly"]
	full.Name, full.AWS = "agent-full", awsRole
	cfg.Roles["agent-full"] = full
	cfg.Providers.AWS = &acfg
	var opts []awssts.Option
	if hc.iam {
		h.iam = iamtest.Start(t, aws.Credentials{AccessKeyID: miniotest.RootUser, SecretAccessKey: miniotest.RootPassword}, "agent-s3")
		acfg.Revocation, acfg.IAMEndpoint = configs.RevokeIAMDenyPolicy, h.iam.URL
		opts = append(opts, awssts.WithRevocations(broker.NewJournal(h.st, nil, log).(providers.Revocations)), awssts.WithClock(h.now))
	}
	p, err := awssts.New(context.Background(), acfg, cfg.Roles, log, opts...)
	if err != nil {
		t.Fatal(err)
	}
	reg.Register(p)
}

// awsCreds reads a session's credential_process file.
func (h *harness) awsCreds(si broker.SessionInfo) (id, secretKey, token string) {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(si.Dir, awssts.ProcessFile))
	if err != nil {
		h.t.Fatalf("read aws credentials of %s: %v", si.ID, err)
	}
	var pc struct {
		AccessKeyID                   string `json:"AccessKeyId"`
		SecretAccessKey, SessionToken string
	}
	if err := json.Unmarshal(b, &pc); err != nil {
		h.t.Fatal(err)
	}
	h.mu.Lock()
	h.tokens = append(h.tokens, pc.SecretAccessKey, pc.SessionToken)
	h.mu.Unlock()
	return pc.AccessKeyID, pc.SecretAccessKey, pc.SessionToken
}

// s3Works reports whether the credentials can read the readable bucket.
func (h *harness) s3Works(id, secretKey, token string) bool {
	out, err := h.minio.S3(id, secretKey, token).GetObject(context.Background(),
		&s3.GetObjectInput{Bucket: aws.String(miniotest.Readable), Key: aws.String(miniotest.Object)})
	if err == nil {
		out.Body.Close()
	}
	return err == nil
}

// start starts a session and remembers its token.
func (h *harness) start(role string) broker.SessionInfo {
	h.t.Helper()
	si, err := h.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: role})
	if err != nil {
		h.t.Fatalf("start %s: %v", role, err)
	}
	if testRoles[role].Vault != nil || role == "agent-full" || role == "agent-all" {
		h.token(si)
	}
	if role == "agent-k8s" || role == "agent-all" {
		h.kubeToken(si)
	}
	return si
}

// token reads the session's token from its dir.
func (h *harness) token(si broker.SessionInfo) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(si.Dir, vault.TokenFile))
	if err != nil {
		h.t.Fatalf("read token of %s: %v", si.ID, err)
	}
	h.mu.Lock()
	h.tokens = append(h.tokens, string(b))
	h.mu.Unlock()
	return string(b)
}

// client returns a Vault client (direct, not through the proxy) with tok.
func (h *harness) client(tok string) *api.Client {
	c, err := h.srv.Client.Clone()
	if err != nil {
		h.t.Fatal(err)
	}
	c.SetToken(tok)
	return c
}

// tokenValid asks Vault whether tok still authenticates.
func (h *harness) tokenValid(tok string) bool {
	_, err := h.client(tok).Auth().Token().LookupSelf()
	var re *api.ResponseError
	if err != nil && (!errors.As(err, &re) || re.StatusCode != 403) {
		h.t.Fatalf("lookup-self: unexpected error %v", err)
	}
	return err == nil
}

// liveTokens counts the valid tokens in Vault by their credbroker_session
// metadata, asking Vault directly (it finds tokens the broker never heard
// of).
func (h *harness) liveTokens() map[string]int {
	h.t.Helper()
	sec, err := h.srv.Client.Logical().List("auth/token/accessors")
	if err != nil {
		h.t.Fatal(err)
	}
	n := map[string]int{}
	for _, k := range sec.Data["keys"].([]any) {
		ls, err := h.srv.Client.Auth().Token().LookupAccessor(k.(string))
		if err != nil {
			continue
		}
		if meta, _ := ls.Data["meta"].(map[string]any); meta != nil {
			if s, _ := meta["credbroker_session"].(string); s != "" {
				n[s]++
			}
		}
	}
	return n
}

// sessionTokens counts valid tokens in Vault that belong to any session.
func (h *harness) sessionTokens() int {
	h.t.Helper()
	n := 0
	for s, c := range h.liveTokens() {
		if s != leases.BrokerSessionID {
			n += c
		}
	}
	return n
}

// assertNoLeaks greps every place that must never hold a secret.
func (h *harness) assertNoLeaks() {
	h.t.Helper()
	places := map[string][]byte{"broker log": []byte(h.logs.String())}
	for _, f := range []string{h.audit} {
		b, _ := os.ReadFile(f)
		places[filepath.Base(f)] = b
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(h.db), "leases.db*"))
	for _, f := range matches {
		b, _ := os.ReadFile(f)
		places[filepath.Base(f)] = b
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.tokens) == 0 {
		h.t.Fatal("no tokens were collected; the leak check would prove nothing")
	}
	for i, tok := range h.tokens {
		for where, b := range places {
			if bytes.Contains(b, []byte(tok)) {
				h.t.Errorf("session token #%d appears in the %s", i, where) // never print the value
			}
		}
	}
}
