package broker_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/internal/tcpproxy"
	"github.com/credbroker/credbroker/providers/kube"
	"github.com/credbroker/credbroker/providers/vault"
)

// Every fault in TestFaults breaks a mint at its first call, before the
// server made anything. These tests cut a server off (connection refused,
// open connections closed) between two calls of one mint, after it made
// something, so the provider's own clean-up fails too.

// TestKubeServerLostMidMint: the API server goes away as the broker
// requests the session's token, after it created the ServiceAccount,
// Secret and RoleBinding.
func TestKubeServerLostMidMint(t *testing.T) {
	var cut midMintCut
	wrap := func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/token") {
				cut.now()
			}
			return rt.RoundTrip(r)
		})
	}
	spies := map[string]*spy{}
	h := newHarness(t, withMinIO(), withKube(), withSpies(spies), withKubeTransport(wrap))
	cut.proxy.Store(h.kube.Proxy)
	h.assertMidMintCut(t, &cut, spies, kube.Name, func(session string) int { return len(h.kubeObjects(session)) })
}

// TestVaultServerLostMidMint: Vault goes away as the broker reads the
// role's secret with the session token it has just created.
func TestVaultServerLostMidMint(t *testing.T) {
	var cut midMintCut
	secretPath := "/v1/" + testRoles["agent-readonly"].Vault.Secrets[0].Path
	// The broker's Vault client speaks plain HTTP here: a reverse proxy in
	// front of the harness's Vault proxy sees each request.
	front := func(t testing.TB, name, target string) string {
		if name != "vault" {
			return target
		}
		rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})
		rp.ErrorHandler = dropConnection
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == secretPath {
				cut.now()
			}
			rp.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return strings.TrimPrefix(srv.URL, "http://")
	}
	spies := map[string]*spy{}
	h := newHarness(t, withMinIO(), withKube(), withSpies(spies), func(c *harnessConfig) { c.via = front })
	cut.proxy.Store(h.proxy)
	h.assertMidMintCut(t, &cut, spies, vault.Name, h.vaultTokensOf)
}

// midMintCut takes a server's proxy down at the first matching request
// once armed.
type midMintCut struct {
	armed atomic.Bool
	proxy atomic.Pointer[tcpproxy.Proxy]
}

func (c *midMintCut) now() {
	if c.armed.CompareAndSwap(true, false) {
		c.proxy.Load().SetUp(false)
	}
}

// assertMidMintCut starts a session of a role with all three providers
// while cut is armed, and checks: the start fails naming provider; what
// the other providers minted for it is revoked; what the cut provider made
// (left counts it, asked of the server directly) is still there and known
// to the store; once the server is back the loop revokes it, each lease
// exactly once.
func (h *harness) assertMidMintCut(t *testing.T, cut *midMintCut, spies map[string]*spy, provider string, left func(session string) int) {
	ctx := context.Background()
	before := h.start("agent-all")
	cut.armed.Store(true)
	_, err := bounded(t, "session start", func() (broker.SessionInfo, error) {
		return h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-all"})
	})
	if cut.armed.Load() {
		t.Fatalf("the start never reached the call to cut (err %v)", err)
	}
	h.assertStartFailedCleanly(err, provider, before.ID, h.secrets(spies))
	failed := otherSession(t, h.st, before.ID)
	if failed == "" {
		t.Fatal("the store has no row for the failed start")
	}
	n := left(failed)
	if n == 0 {
		t.Fatalf("nothing of the failed session is left at %s: the cut came before the mint made anything", provider)
	}
	t.Logf("%d %s credential(s) or object(s) of the failed session left while the server is away", n, provider)

	back := len(h.auditEvents())
	cut.proxy.Load().SetUp(true)
	if _, err := h.b.EndSession(ctx, h.caller, before.ID, "test over"); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	h.tickUntilSettled(2 * time.Minute)
	t.Logf("MEASURE %s mid-mint: settled %s after the server was back", provider, time.Since(began).Round(100*time.Millisecond))
	if n := left(failed); n != 0 {
		t.Errorf("%d %s credential(s) or object(s) of the failed session after the server came back", n, provider)
	}
	h.assertAllDead(spies, "after the server came back")
	h.assertStoreSettled("after the server came back", true)
	h.assertRevokedOnce(back)
	h.assertNoLeaks()
}

// dropConnection closes the client's connection when the server cannot be
// reached, as a network cut would, instead of answering 502.
func dropConnection(w http.ResponseWriter, _ *http.Request, _ error) {
	if hj, ok := w.(http.Hijacker); ok {
		if c, _, err := hj.Hijack(); err == nil {
			_ = c.Close()
			return
		}
	}
	w.WriteHeader(http.StatusBadGateway)
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
