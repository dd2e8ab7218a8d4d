package broker_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/proxy"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
)

// withProxyDelivery serves egress gateways with proxy delivery, as the
// daemon does, and adds the Vault-only roles agent-vault (files),
// agent-vault-proxy (proxy) and agent-vault-proxy-roots (proxy, and it may
// also reach a host the gateway relays, so its bundle holds the system
// roots).
func withProxyDelivery() harnessOpt { return func(c *harnessConfig) { c.proxyDelivery = true } }

func (h *harness) addProxyDelivery(t testing.TB, hc *harnessConfig, cfg *configs.Config, o *broker.Options, dir string) {
	t.Helper()
	for name, d := range map[string]string{"agent-vault": configs.DeliveryFiles, "agent-vault-proxy": configs.DeliveryProxy} {
		cfg.Roles[name] = configs.Role{Name: name, TTL: configs.Duration(10 * time.Minute), MaxTTL: configs.Duration(time.Hour),
			Delivery: d, Vault: &configs.VaultRole{Policies: []string{"agent-readonly"}}, Egress: &configs.Egress{}}
	}
	cfg.Roles["agent-vault-proxy-roots"] = configs.Role{Name: "agent-vault-proxy-roots", TTL: configs.Duration(10 * time.Minute), MaxTTL: configs.Duration(time.Hour),
		Delivery: configs.DeliveryProxy, Vault: &configs.VaultRole{Policies: []string{"agent-readonly"}}, Egress: &configs.Egress{Allow: []string{"pypi.example:443"}}}
	d, err := proxy.New(proxy.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if hc.proxyNoGateway {
		return
	}
	o.EgressDir = filepath.Join(dir, "egress")
	o.OpenProxy = func(id string, role configs.Role, expires time.Time) (broker.ProxySession, error) {
		s, err := d.Open(id, role, expires)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	if hc.proxyWrap != nil {
		o.OpenProxy = hc.proxyWrap(o.OpenProxy)
	}
}

// TestProxyDeliveryRefusedWithoutGateway: a broker that serves no
// gateway with proxy delivery refuses a proxy role's start before it
// mints anything, and says what to run.
func TestProxyDeliveryRefusedWithoutGateway(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.proxyDelivery, c.proxyNoGateway = true, true })
	_, err := h.b.StartSession(t.Context(), h.caller, broker.StartRequest{Role: "agent-vault-proxy"})
	if !errors.Is(err, broker.ErrBadRequest) || !strings.Contains(err.Error(), "agent-vault-proxy delivers by proxy") || !strings.Contains(err.Error(), "credbroker-daemon") {
		t.Fatalf("start: %v; want a bad request naming the role and credbroker-daemon", err)
	}
	for _, e := range h.auditEvents() {
		if e.Event == broker.EvLeaseMint {
			t.Fatalf("a lease was minted (%s) for a start that could never deliver", e.Provider)
		}
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("Vault holds %d session tokens after a refused start, want 0 (nothing minted)", n)
	}
}

// TestProxyOpenFailureRevokes: when the proxy side cannot be opened (its
// CA), the start fails and what was minted is revoked.
func TestProxyOpenFailureRevokes(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.proxyDelivery = true
		c.proxyWrap = func(broker.OpenProxyFunc) broker.OpenProxyFunc {
			return func(string, configs.Role, time.Time) (broker.ProxySession, error) {
				return nil, errors.New("no CA today")
			}
		}
	})
	_, err := h.b.StartSession(t.Context(), h.caller, broker.StartRequest{Role: "agent-vault-proxy"})
	if err == nil || !strings.Contains(err.Error(), "no CA today") {
		t.Fatalf("start: %v; want the proxy side's error", err)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("Vault holds %d session tokens after a failed start, want 0 (revoked)", n)
	}
}

// TestProxyDeliverySession: a proxy-delivered session's dir holds a
// placeholder, which Vault refuses, and the session CA; ending the
// session closes its gateway.
func TestProxyDeliverySession(t *testing.T) {
	h := newHarness(t, withProxyDelivery())
	si := h.start("agent-vault-proxy")
	ph := h.token(si)
	if len(ph) < 30 || ph[:4] != "hvs." {
		t.Fatalf("the dir's token is not a vault-shaped placeholder (length %d)", len(ph))
	}
	if h.tokenValid(ph) {
		t.Fatal("the placeholder works at Vault")
	}
	if h.sessionTokens() != 1 {
		t.Fatalf("Vault holds %d session tokens, want 1 (the real one, kept by the gateway)", h.sessionTokens())
	}
	if si.EgressSocket == "" {
		t.Fatal("no egress gateway for a proxy-delivered session")
	}
	if _, err := os.Stat(filepath.Join(si.Dir, proxy.CAFile)); err != nil {
		t.Fatalf("no session CA in the dir: %v", err)
	}
	if _, err := h.b.EndSession(t.Context(), h.caller, si.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if h.sessionTokens() != 0 {
		t.Fatal("the real token outlived the session")
	}
}

// closeSpy records whether a proxy side was closed.
type closeSpy struct {
	broker.ProxySession
	closed *atomic.Int32
}

func (c closeSpy) Close() { c.closed.Add(1); c.ProxySession.Close() }

// TestProxyPreparedClosedOnFailedStart: the proxy side, opened while the
// intent is written, is closed when the start fails before it is used
// (here the leases' transaction fails after the mint), and what was
// minted is revoked.
func TestProxyPreparedClosedOnFailedStart(t *testing.T) {
	var opened, closed atomic.Int32
	var cs *countingStore
	h := newHarness(t, withProxyDelivery(), func(c *harnessConfig) {
		c.store = func(st leases.Store) leases.Store {
			cs = &countingStore{Store: st, calls: map[string]int{}}
			return cs
		}
		c.proxyWrap = func(open broker.OpenProxyFunc) broker.OpenProxyFunc {
			return func(id string, role configs.Role, expires time.Time) (broker.ProxySession, error) {
				ps, err := open(id, role, expires)
				if err != nil {
					return nil, err
				}
				opened.Add(1)
				return closeSpy{ps, &closed}, nil
			}
		}
	})
	cs.failLeases.Store(true)
	if _, err := h.b.StartSession(t.Context(), h.caller, broker.StartRequest{Role: "agent-vault-proxy"}); err == nil {
		t.Fatal("start succeeded with the leases' transaction failing")
	}
	if o, c := opened.Load(), closed.Load(); o != 1 || c != 1 {
		t.Fatalf("proxy sides opened %d, closed %d; want 1 and 1", o, c)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("Vault holds %d session tokens after a failed start, want 0 (revoked)", n)
	}
}
