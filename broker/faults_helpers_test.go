package broker_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/toxitest"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/awssts/miniotest"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// withToxiproxy puts a Toxiproxy proxy (named after the server) in front
// of each server's proxy; proxies collects them for the test to inject
// faults.
func withToxiproxy(tp *toxitest.Server, proxies map[string]*toxitest.Proxy) harnessOpt {
	return func(c *harnessConfig) {
		c.via = func(t testing.TB, name, target string) string {
			p := tp.Proxy(t, name, target)
			proxies[name] = p
			return p.Listen
		}
	}
}

// spy wraps a real provider and keeps every grant it returned, so a test
// can check at the server that credentials of a failed start are dead.
type spy struct {
	providers.Provider
	mu     sync.Mutex
	grants []providers.Grant
}

func withSpies(spies map[string]*spy) harnessOpt {
	return func(c *harnessConfig) {
		c.wrap = func(p providers.Provider) providers.Provider {
			s := &spy{Provider: p}
			spies[p.Name()] = s
			return s
		}
	}
}

func (s *spy) Mint(ctx context.Context, ps providers.Session, role configs.Role) (providers.Grant, error) {
	g, err := s.Provider.Mint(ctx, ps, role)
	if len(g.Files) > 0 {
		s.mu.Lock()
		s.grants = append(s.grants, g)
		s.mu.Unlock()
	}
	return g, err
}

// files returns the value of file rel in every grant that has it.
func (s *spy) files(rel string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, g := range s.grants {
		if v, ok := g.Files[rel]; ok {
			out = append(out, v.Reveal())
		}
	}
	return out
}

// awsKeys is one set of STS credentials a spy saw.
type awsKeys struct{ id, secret, token string }

func (h *harness) spiedAWS(s *spy) []awsKeys {
	h.t.Helper()
	var out []awsKeys
	for _, f := range s.files(awssts.ProcessFile) {
		var pc struct {
			AccessKeyID                   string `json:"AccessKeyId"`
			SecretAccessKey, SessionToken string
		}
		if err := json.Unmarshal([]byte(f), &pc); err != nil {
			h.t.Fatal(err)
		}
		out = append(out, awsKeys{pc.AccessKeyID, pc.SecretAccessKey, pc.SessionToken})
	}
	return out
}

// secrets is every secret value a failure message must never hold: what
// the spies saw minted, and the broker's own credentials at each server.
func (h *harness) secrets(spies map[string]*spy) []string {
	out := []string{vaulttest.RootToken, miniotest.RootPassword, h.kube.Srv.Token(kubetest.AdminUser)}
	out = append(out, spies[vault.Name].files(vault.TokenFile)...)
	out = append(out, spies[kube.Name].files(kube.TokenFile)...)
	for _, k := range h.spiedAWS(spies[awssts.Name]) {
		out = append(out, k.secret, k.token)
	}
	return out
}

// vaultTokensOf counts valid Vault tokens whose metadata names session.
func (h *harness) vaultTokensOf(session string) int {
	h.t.Helper()
	return h.liveTokens()[session]
}

// assertAllDead checks at each server, not through the proxies, that every
// credential any spy saw is refused and that no session token or
// Kubernetes object of the broker is left.
func (h *harness) assertAllDead(spies map[string]*spy, when string) {
	h.t.Helper()
	for i, tok := range spies[vault.Name].files(vault.TokenFile) {
		if h.tokenValid(tok) {
			h.t.Errorf("%s: Vault token #%d is still valid", when, i)
		}
	}
	if n := h.sessionTokens(); n != 0 {
		h.t.Errorf("%s: %d Vault session tokens are still valid", when, n)
	}
	for i, k := range h.spiedAWS(spies[awssts.Name]) {
		if h.s3Works(k.id, k.secret, k.token) {
			h.t.Errorf("%s: AWS credentials #%d (%s) still work", when, i, k.id)
		}
	}
	for i, tok := range spies[kube.Name].files(kube.TokenFile) {
		h.waitKubeRejected(tok, fmt.Sprintf("%s: kube token #%d", when, i))
	}
	if left := h.kubeObjects(""); len(left) != 0 {
		h.t.Errorf("%s: kube objects left: %v", when, left)
	}
}

// assertStoreSettled checks that the store holds no live session, no lease
// and no intent; with ownMayStay, the broker's own active leases (its
// Vault epoch, which belongs to no session and outlives them) may stay.
func (h *harness) assertStoreSettled(when string, ownMayStay bool) {
	h.t.Helper()
	ctx := context.Background()
	ss, err := h.st.ListSessions(ctx, leases.SessionFilter{States: []leases.SessionState{leases.SessionStarting, leases.SessionActive, leases.SessionEnding}})
	if err != nil {
		h.t.Fatal(err)
	}
	all, err := h.st.FindLeases(ctx, leases.LeaseFilter{})
	if err != nil {
		h.t.Fatal(err)
	}
	var ls []leases.Lease
	for _, l := range all {
		if !ownMayStay || l.Kind != vault.KindEpoch || l.State != leases.LeaseActive {
			ls = append(ls, l)
		}
	}
	in, err := h.st.ListIntents(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(ss)+len(ls)+len(in) != 0 {
		h.t.Errorf("%s: the store still holds %d live sessions, %d leases, %d intents", when, len(ss), len(ls), len(in))
		for _, l := range ls {
			h.t.Logf("  lease %s %s attempts %d: %s", l.ID, l.State, l.Attempts, l.LastError)
		}
	}
}

// auditEvent is the part of an audit record the fault tests read.
type auditEvent struct {
	Event    string    `json:"event"`
	Session  string    `json:"session"`
	Provider string    `json:"provider"`
	Lease    string    `json:"lease"`
	Error    string    `json:"error"`
	Time     time.Time `json:"time"`
}

func (h *harness) auditEvents() []auditEvent {
	h.t.Helper()
	f, err := os.Open(h.audit)
	if err != nil {
		h.t.Fatal(err)
	}
	defer f.Close()
	var out []auditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var e auditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			h.t.Fatalf("audit line: %v", err)
		}
		out = append(out, e)
	}
	return out
}

// assertRevokedOnce checks the audit log: every lease was revoked exactly
// once, by its own lease.revoke or by a successful provider.revoke_all
// after it was minted, never both and never twice; and from index since
// on (the server is back) no revocation failed.
func (h *harness) assertRevokedOnce(since int) {
	h.t.Helper()
	evs := h.auditEvents()
	minted := map[string]int{}      // lease -> index of its mint
	provOf := map[string]string{}   // lease -> provider
	revoked := map[string][]int{}   // lease -> indexes of lease.revoke / orphan_revoked
	wholesale := map[string][]int{} // provider -> indexes of successful revoke_all
	for i, e := range evs {
		switch e.Event {
		case broker.EvLeaseMint:
			if leases.IsBrokerSession(e.Session) {
				continue // the broker's own credential (a Vault epoch) outlives sessions
			}
			minted[e.Lease], provOf[e.Lease] = i, e.Provider
		case broker.EvLeaseRevoke, broker.EvOrphanRevoke:
			revoked[e.Lease] = append(revoked[e.Lease], i)
			provOf[e.Lease] = e.Provider
		case broker.EvProviderRevoke:
			if e.Error == "" {
				wholesale[e.Provider] = append(wholesale[e.Provider], i)
			}
		}
		if i >= since && (e.Event == broker.EvLeaseRevokeFail || (e.Event == broker.EvProviderRevoke && e.Error != "")) {
			h.t.Errorf("audit: %s for %s %s after the server was back: %s", e.Event, e.Provider, e.Lease, e.Error)
		}
	}
	if len(minted) == 0 {
		h.t.Fatal("audit: no lease.mint at all; the check would prove nothing")
	}
	for id, p := range provOf {
		at, wasMinted := minted[id]
		bulk := 0
		if wasMinted && len(revoked[id]) == 0 {
			for _, j := range wholesale[p] {
				if j > at {
					bulk++
				}
			}
			bulk = min(bulk, 1)
		}
		if n := len(revoked[id]) + bulk; n != 1 {
			h.t.Errorf("audit: lease %s revoked %d times (lease.revoke at %v, minted: %v)", id, n, revoked[id], wasMinted)
		}
	}
}

// noSecretIn fails the test if msg holds any of secrets (naming only
// which one, never its value).
func noSecretIn(t testing.TB, what, msg string, secrets []string) {
	t.Helper()
	for i, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			t.Errorf("%s holds secret #%d", what, i)
		}
	}
}

// pendingProviders is the sorted set of providers with pending leases.
func pendingProviders(ls []broker.LeaseInfo) []string {
	var ps []string
	for _, l := range ls {
		if !slices.Contains(ps, l.Provider) {
			ps = append(ps, l.Provider)
		}
	}
	slices.Sort(ps)
	return ps
}

// otherSession returns the id of a session in st other than known (the
// one a test started but could not get an answer for), or "" if none.
func otherSession(t testing.TB, st interface {
	ListSessions(context.Context, leases.SessionFilter) ([]leases.Session, error)
}, known string) string {
	t.Helper()
	ss, err := st.ListSessions(context.Background(), leases.SessionFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.ID != known {
			return s.ID
		}
	}
	return ""
}
