package broker_test

import (
	"context"
	"slices"
	"testing"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// TestFleetConfigFingerprintDiffers: three brokers share one store; b
// mints through another Vault token role than a and c. Each registers its
// provider fingerprints, and status --all-hosts on any broker shows every
// host's and marks exactly those whose Vault config differs from its own.
func TestFleetConfigFingerprintDiffers(t *testing.T) {
	f := newFleet(t, "a")
	ctx := context.Background()
	const otherRole = "credbroker-session-b"
	if _, err := f.h.client(vaulttest.RootToken).Logical().WriteWithContext(ctx, "auth/token/roles/"+otherRole, map[string]any{
		"allowed_policies": "agent-readonly,agent-dev", "orphan": false, "renewable": true, "token_explicit_max_ttl": "12h"}); err != nil {
		t.Fatalf("create token role: %v", err)
	}
	f.vaultCfg = func(host string, v *configs.VaultProvider) {
		if host == "b" {
			v.TokenRole = otherRole
		}
	}
	f.nodes["b"] = f.newNode("b")
	f.nodes["c"] = f.newNode("c")
	for _, h := range []string{"a", "b", "c"} {
		if err := f.nodes[h].b.RegisterHost(ctx); err != nil {
			t.Fatalf("register %s: %v", h, err)
		}
	}
	f.start(f.nodes["b"]) // b's config works: it is only different

	fa, fb := f.nodes["a"].b.Fingerprints(), f.nodes["b"].b.Fingerprints()
	if fa["vault"] == "" || fa["vault"] == fb["vault"] {
		t.Fatalf("vault fingerprints a=%q b=%q; want set and different", fa["vault"], fb["vault"])
	}
	tests := []struct {
		from string
		want map[string][]string // host -> providers that differ from `from`'s
	}{
		{"a", map[string][]string{"a": nil, "b": {"vault"}, "c": nil}},
		{"b", map[string][]string{"a": {"vault"}, "b": nil, "c": {"vault"}}},
	}
	for _, tc := range tests {
		t.Run("from "+tc.from, func(t *testing.T) {
			st, err := f.nodes[tc.from].b.StatusWith(ctx, true)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Hosts) != len(tc.want) {
				t.Fatalf("hosts = %+v; want %d", st.Hosts, len(tc.want))
			}
			for _, h := range st.Hosts {
				want, ok := tc.want[h.Host]
				if !ok || !slices.Equal(h.Differs, want) || h.This != (h.Host == tc.from) {
					t.Errorf("host %q: differs %v this %v; want differs %v this %v", h.Host, h.Differs, h.This, want, h.Host == tc.from)
				}
				if h.Fingerprints["vault"] != f.nodes[h.Host].b.Fingerprints()["vault"] || h.SeenAt.IsZero() {
					t.Errorf("host %q registered %v at %v; want its fingerprints %v", h.Host, h.Fingerprints, h.SeenAt, f.nodes[h.Host].b.Fingerprints())
				}
			}
			if own, err := f.nodes[tc.from].b.Status(ctx); err != nil || own.Hosts != nil {
				t.Errorf("status without --all-hosts lists hosts %+v (%v); want none", own.Hosts, err)
			}
		})
	}
}
