package main

import (
	"bytes"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/sqlite"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
)

// crashRole mints at every server: Vault, AWS (MinIO's STS) and Kubernetes.
const crashRole = "agent-all"

// crashWorld is an e2e world with all three providers: a Vault, a MinIO
// reached through an STS tap, and a namespace of the shared kube-apiserver.
// The broker's clock can be moved (CREDBROKER_CLOCK_OFFSET_FILE).
type crashWorld struct {
	*e2e
	minio     *miniotest.Server
	tap       *stsTap
	kube      *kubetest.Server
	ns        string
	clockFile string
	awsEnv    []string
}

func newCrashWorld(t *testing.T) *crashWorld {
	t.Helper()
	e := newE2E(t)
	w := &crashWorld{e2e: e, minio: miniotest.Start(t), kube: kubetest.Shared(t)}
	w.tap = startSTSTap(t, w.minio.URL)
	w.ns = w.kube.Namespace(t)
	if err := w.kube.CreateRole(context.Background(), kubetest.PodReader(w.ns)); err != nil {
		t.Fatal(err)
	}
	e.addSecret(t, miniotest.RootPassword)
	e.addSecret(t, w.kube.Token(kubetest.AdminUser))
	w.clockFile = filepath.Join(e.dir, "clock-offset")
	w.setClock(t, "0s")
	none := filepath.Join(e.dir, "no-such-aws-file")
	w.awsEnv = []string{
		"AWS_ACCESS_KEY_ID=" + miniotest.RootUser, "AWS_SECRET_ACCESS_KEY=" + miniotest.RootPassword,
		"AWS_CONFIG_FILE=" + none, "AWS_SHARED_CREDENTIALS_FILE=" + none,
		"CREDBROKER_CLOCK_OFFSET_FILE=" + w.clockFile,
	}
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	// Sessions live 30 minutes, their AWS credentials 15 and their kube
	// tokens 10, so moving the clock 13 minutes makes both due for renewal.
	provs := fmt.Sprintf(`providers:
  aws:
    region: %s
    sts_endpoint: %s
    endpoint_url: %s
    revocation: minio-revoke-tokens
  kube:
    kubeconfig: %s
    context: %s
`, miniotest.Region, w.tap.URL, w.minio.URL, w.kube.Kubeconfig, kubetest.AdminContext)
	role := fmt.Sprintf(`  %s:
    description: Vault, AWS and Kubernetes together (crash tests).
    ttl: 30m
    max_ttl: 1h
    vault:
      policies: [agent-readonly]
      secrets:
        - name: config
          path: secret/data/agent/readonly/config
    aws:
      role_arn: arn:aws:iam::000000000000:role/agent-s3
      max_duration: 15m
      policy: '%s'
    kube:
      namespace: %s
      role: pod-reader
      token_ttl: 10m
`, crashRole, miniotest.ReadOnlyPolicy, w.ns)
	cfg := strings.Replace(string(b), "providers:\n", provs, 1) + role
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return w
}

// serve starts the daemon with the world's AWS identity and clock.
func (w *crashWorld) serve(t *testing.T, env ...string) *proc {
	t.Helper()
	return w.e2e.serve(t, append(slices.Clone(w.awsEnv), env...)...)
}

// setClock sets how far ahead of the wall clock the daemon's clock runs.
func (w *crashWorld) setClock(t *testing.T, offset string) {
	t.Helper()
	if err := os.WriteFile(w.clockFile, []byte(offset), 0o600); err != nil {
		t.Fatal(err)
	}
}

// stsCred is one set of credentials MinIO's STS issued to the broker.
type stsCred struct {
	session        string // credbroker session id, from RoleSessionName
	id, key, token string
}

// stsTap is a reverse proxy in front of MinIO that keeps every credential
// its STS hands out, so the test can ask MinIO about credentials the broker
// minted but died before writing anywhere. It forwards requests unchanged
// (the Host header included, so SigV4 signatures still verify).
type stsTap struct {
	URL string

	mu    sync.Mutex
	creds []stsCred
}

func startSTSTap(t *testing.T, target string) *stsTap {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	tap := &stsTap{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host
			// Keep the role session name (credbroker-<session id>) for
			// record; the body goes on unchanged.
			if r.Out.Body == nil {
				return
			}
			body, err := io.ReadAll(r.Out.Body)
			r.Out.Body.Close()
			r.Out.Body = io.NopCloser(bytes.NewReader(body))
			if err != nil {
				return
			}
			if form, err := url.ParseQuery(string(body)); err == nil && form.Get("Action") == "AssumeRole" {
				session := strings.TrimPrefix(form.Get("RoleSessionName"), "credbroker-")
				r.Out = r.Out.WithContext(context.WithValue(r.Out.Context(), tapSessionKey{}, session))
			}
		},
		ModifyResponse: tap.record,
	}
	srv := httptest.NewServer(rp)
	t.Cleanup(srv.Close)
	tap.URL = srv.URL
	return tap
}

// tapSessionKey carries an AssumeRole's session id from request to answer.
type tapSessionKey struct{}

// record reads AssumeRole answers and keeps their credentials.
func (tap *stsTap) record(resp *http.Response) error {
	session, _ := resp.Request.Context().Value(tapSessionKey{}).(string)
	if session == "" || resp.StatusCode != http.StatusOK {
		return nil
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return err
	}
	var ar struct {
		Result struct {
			Credentials struct {
				AccessKeyID     string `xml:"AccessKeyId"`
				SecretAccessKey string
				SessionToken    string
			}
		} `xml:"AssumeRoleResult"`
	}
	if xml.Unmarshal(body, &ar) != nil || ar.Result.Credentials.AccessKeyID == "" {
		return nil
	}
	c := ar.Result.Credentials
	tap.mu.Lock()
	tap.creds = append(tap.creds, stsCred{session: session, id: c.AccessKeyID, key: c.SecretAccessKey, token: c.SessionToken})
	tap.mu.Unlock()
	return nil
}

// live returns the tapped credentials MinIO still accepts, and forgets the
// others (a revoked credential never comes back).
func (w *crashWorld) liveSTS() []stsCred {
	w.tap.mu.Lock()
	all := slices.Clone(w.tap.creds)
	w.tap.mu.Unlock()
	var live []stsCred
	dead := map[string]bool{}
	for _, c := range all {
		out, err := w.minio.S3(c.id, c.key, c.token).GetObject(context.Background(),
			&s3.GetObjectInput{Bucket: aws.String(miniotest.Readable), Key: aws.String(miniotest.Object)})
		if err != nil {
			dead[c.id] = true
			continue
		}
		out.Body.Close()
		live = append(live, c)
	}
	w.tap.mu.Lock()
	w.tap.creds = slices.DeleteFunc(w.tap.creds, func(c stsCred) bool { return dead[c.id] })
	w.tap.mu.Unlock()
	return live
}

// crashCount is what the servers and the store say after a crash and the
// restart: credentials valid at a server but unknown to the lease store,
// credentials the store lists as active that a server already revoked, and
// inconsistencies within the store.
type crashCount struct {
	validUnknown map[string]int // by server: vault, minio, kube
	knownRevoked map[string]int
	store        []string // intents left, pending leases, dirs without sessions...
	valid        int      // every session credential still valid
	details      []string // what each count is made of, for a failure message
}

func (c crashCount) clean() bool {
	return sum(c.validUnknown) == 0 && sum(c.knownRevoked) == 0 && len(c.store) == 0
}

func (c crashCount) String() string {
	return fmt.Sprintf("valid but unknown %v, known but revoked %v, store %v, valid session credentials %d",
		c.validUnknown, c.knownRevoked, c.store, c.valid)
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// count asks Vault, MinIO, the kube-apiserver and the lease store. It never
// prints a secret: credentials are named by accessor, access key id or
// ServiceAccount.
func (w *crashWorld) count(t *testing.T) crashCount {
	t.Helper()
	ctx := context.Background()
	c := crashCount{validUnknown: map[string]int{}, knownRevoked: map[string]int{}}
	st, err := sqlite.Open(ctx, filepath.Join(w.stateDir, "leases.db"))
	if err != nil {
		t.Fatalf("open the lease store: %v", err)
	}
	defer st.Close()
	all, err := st.FindLeases(ctx, leases.LeaseFilter{})
	if err != nil {
		t.Fatal(err)
	}
	sessions, err := st.ListSessions(ctx, leases.SessionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	state := map[string]leases.SessionState{}
	for _, s := range sessions {
		state[s.ID] = s.State
	}
	byExternal := map[string]leases.Lease{}
	bySession := map[string]map[string]bool{} // session → providers with a lease
	for _, l := range all {
		byExternal[l.Provider+"|"+l.ExternalID] = l
		if bySession[l.SessionID] == nil {
			bySession[l.SessionID] = map[string]bool{}
		}
		bySession[l.SessionID][l.Provider] = true
		if l.State == leases.LeaseRevokePending {
			c.store = append(c.store, fmt.Sprintf("lease %s pending (%s)", l.ID, l.LastError))
		}
	}

	// Vault: every token it knows, by accessor.
	live := w.liveTokens(t)
	for acc, session := range live {
		if !strings.HasPrefix(session, "_broker") {
			c.valid++
		}
		if _, ok := byExternal["vault|"+acc]; !ok {
			c.validUnknown["vault"]++
			c.details = append(c.details, fmt.Sprintf("vault: token %s of %s is valid but not in the store", acc, session))
		}
	}
	// MinIO: every credential its STS issued.
	liveSessions := map[string]bool{}
	for _, cr := range w.liveSTS() {
		c.valid++
		liveSessions[cr.session] = true
		if !bySession[cr.session]["aws"] {
			c.validUnknown["minio"]++
			c.details = append(c.details, fmt.Sprintf("minio: credential %s of %s is valid but the store has no aws lease for it", cr.id, cr.session))
		}
	}
	// Kubernetes: every ServiceAccount credbroker made (its bound tokens
	// are valid while it exists).
	sas, err := w.kube.Admin.CoreV1().ServiceAccounts(w.ns).List(ctx, metav1.ListOptions{LabelSelector: kube.LabelManagedBy + "=" + kube.ManagedBy})
	if err != nil {
		t.Fatalf("list service accounts: %v", err)
	}
	liveSA := map[string]bool{}
	for _, sa := range sas.Items {
		ext := w.ns + "/" + sa.Name
		liveSA[ext] = true
		c.valid++
		if _, ok := byExternal["kube|"+ext]; !ok {
			c.validUnknown["kube"]++
			c.details = append(c.details, fmt.Sprintf("kube: service account %s is live but not in the store", ext))
		}
	}
	// The store's active leases, asked of their server.
	for _, l := range all {
		if l.State != leases.LeaseActive {
			continue
		}
		gone := false
		switch l.Provider {
		case "vault":
			_, ok := live[l.ExternalID]
			gone = !ok && (l.Kind == "token" || l.Kind == "epoch")
		case "aws":
			gone = !liveSessions[l.SessionID]
		case "kube":
			gone = !liveSA[l.ExternalID]
		}
		if gone {
			c.knownRevoked[l.Provider]++
			c.details = append(c.details, fmt.Sprintf("%s: lease %s (%s) is active in the store but its credential is revoked", l.Provider, l.ID, state[l.SessionID]))
		}
	}
	// The store against itself and the session dirs.
	intents, err := st.ListIntents(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range intents {
		c.store = append(c.store, "intent "+in.ID)
	}
	dirs, _ := os.ReadDir(filepath.Join(w.runtimeDir, "sessions"))
	onDisk := map[string]bool{}
	for _, d := range dirs {
		if d.IsDir() {
			onDisk[d.Name()] = true
			if state[d.Name()] != leases.SessionActive {
				c.store = append(c.store, fmt.Sprintf("dir %s of a %q session", d.Name(), state[d.Name()]))
			}
		}
	}
	for _, s := range sessions {
		switch {
		case s.State == leases.SessionActive && !onDisk[s.ID]:
			c.store = append(c.store, "active session "+s.ID+" without a dir")
		case s.State == leases.SessionEnding:
			c.store = append(c.store, "session "+s.ID+" still ending")
		case s.State == leases.SessionStarting:
			c.store = append(c.store, "session "+s.ID+" still starting")
		case s.State == leases.SessionEnded && len(bySession[s.ID]) > 0:
			c.store = append(c.store, "ended session "+s.ID+" still has leases")
		}
	}
	return c
}
