package broker_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/proxy"
	"github.com/credbroker/credbroker/configs"
)

// withProxyDelivery serves egress gateways with proxy delivery, as the
// daemon does, and adds the Vault-only roles agent-vault (files) and
// agent-vault-proxy (proxy).
func withProxyDelivery() harnessOpt { return func(c *harnessConfig) { c.proxyDelivery = true } }

func (h *harness) addProxyDelivery(t testing.TB, cfg *configs.Config, o *broker.Options, dir string) {
	t.Helper()
	for name, d := range map[string]string{"agent-vault": configs.DeliveryFiles, "agent-vault-proxy": configs.DeliveryProxy} {
		cfg.Roles[name] = configs.Role{Name: name, TTL: configs.Duration(10 * time.Minute), MaxTTL: configs.Duration(time.Hour),
			Delivery: d, Vault: &configs.VaultRole{Policies: []string{"agent-readonly"}}, Egress: &configs.Egress{}}
	}
	d, err := proxy.New(proxy.Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	o.EgressDir = filepath.Join(dir, "egress")
	o.OpenProxy = func(id string, role configs.Role, expires time.Time) (broker.ProxySession, error) {
		s, err := d.Open(id, role, expires)
		if err != nil {
			return nil, err
		}
		return s, nil
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
