package vault_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/providertest"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// childPolicy lets a session token create child tokens, so a test can show
// that they die with it.
const childPolicy = `path "auth/token/create" { capabilities = ["update"] }`

// TestSessionTokenRenewFromInsideStopsAtSessionEnd renews the session token
// from inside the session, as an agent would with the vault CLI and with
// the API, asking for 48h, through token roles set up in the ways an
// operator might: whatever the role, the token must not end after the
// session. (Vault renews a token made through a role up to the role's
// token_explicit_max_ttl, not the token's own.)
func TestSessionTokenRenewFromInsideStopsAtSessionEnd(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	roles := []struct {
		name string
		data map[string]any
	}{
		{"docs", map[string]any{"token_explicit_max_ttl": "12h"}},
		{"no-explicit-max", map[string]any{}},
		{"periodic", map[string]any{"token_period": "48h"}},
	}
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			ctx := context.Background()
			data := map[string]any{"allowed_policies": "agent-dev", "orphan": false, "renewable": true}
			for k, v := range r.data {
				data[k] = v
			}
			tokenRole := "credbroker-" + r.name
			if _, err := srv.Client.Logical().WriteWithContext(ctx, "auth/token/roles/"+tokenRole, data); err != nil {
				t.Fatalf("write token role: %v", err)
			}
			p, _ := newProviderWithRole(t, srv, tokenRole)
			s := providertest.NewSession(devRole.Name, 10*time.Minute)
			g, err := p.Mint(ctx, s, devRole)
			if err != nil {
				t.Fatal(err)
			}
			if tok := tokenLease(t, g); tok.Renewable || !tok.ExpiresAt.After(s.ExpiresAt.Add(-5*time.Second)) {
				t.Errorf("token lease renewable=%v expires %v; want not renewable, ending with the session at %v",
					tok.Renewable, tok.ExpiresAt, s.ExpiresAt)
			}
			tok := g.Files[vault.TokenFile].Reveal()
			cliErr := vaultCLI(t, srv, tok, "token", "renew", "-increment=48h")
			c := sessionClient(t, srv, g)
			_, apiErr := c.Auth().Token().RenewSelfWithContext(ctx, int((48 * time.Hour).Seconds()))
			exp := tokenExpiry(ctx, t, c)
			if exp.After(s.ExpiresAt) {
				t.Errorf("after renew -increment=48h from inside (cli: %v; api: %v) the token expires %v, after the session's end %v (by %v)",
					cliErr, apiErr, exp, s.ExpiresAt, exp.Sub(s.ExpiresAt))
			}
			if exp.Before(s.ExpiresAt.Add(-5 * time.Second)) {
				t.Errorf("token expires %v, well before the session's end %v: the session loses Vault early", exp, s.ExpiresAt)
			}
			if cliErr == nil || apiErr == nil {
				t.Errorf("renewing the session token from inside succeeded (cli: %v, api: %v); want it refused", cliErr, apiErr)
			}
		})
	}
}

// TestSessionCredentialsDieAtSessionEndWithoutBroker: the agent renews its
// token, the broker is gone (nothing revokes anything), and still Vault
// itself refuses the token, its child tokens and its leases right after
// the session's end.
func TestSessionCredentialsDieAtSessionEndWithoutBroker(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	ctx := context.Background()
	if err := srv.Client.Sys().PutPolicyWithContext(ctx, "child-maker", childPolicy); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Client.Logical().WriteWithContext(ctx, "auth/token/roles/"+vaulttest.TokenRole, map[string]any{
		"allowed_policies": "agent-readonly,agent-dev,child-maker", "orphan": false, "renewable": true, "token_explicit_max_ttl": "12h",
	}); err != nil {
		t.Fatal(err)
	}
	p, _ := newProvider(t, srv)
	role := devRole
	role.Vault = &configs.VaultRole{Policies: []string{"agent-dev", "child-maker"}, Secrets: devRole.Vault.Secrets}
	s := providertest.NewSession(role.Name, 30*time.Second)
	g, err := p.Mint(ctx, s, role)
	if err != nil {
		t.Fatal(err)
	}
	c := sessionClient(t, srv, g)
	// Inside the session: renew everything for 48h and make a child token
	// that asks for 48h too.
	_ = vaultCLI(t, srv, g.Files[vault.TokenFile].Reveal(), "token", "renew", "-increment=48h")
	child, err := c.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{TTL: "48h", Policies: []string{"agent-dev"}})
	if err != nil {
		t.Fatalf("create a child token from inside the session: %v", err)
	}
	cc := sessionClient(t, srv, g)
	cc.SetToken(child.Auth.ClientToken)
	var certLease string
	for _, l := range g.Leases {
		if l.Kind == vault.KindSecret {
			certLease = l.ExternalID
			_, _ = c.Sys().RenewWithContext(ctx, l.ExternalID, int((48 * time.Hour).Seconds()))
		}
	}
	if certLease == "" {
		t.Fatalf("want a PKI lease, got %v", providertest.LeasesOf(g.Leases))
	}
	// Everything works until shortly before the end...
	time.Sleep(time.Until(s.ExpiresAt.Add(-3 * time.Second)))
	for what, cl := range map[string]*api.Client{"session token": c, "child token": cc} {
		if _, err := cl.Auth().Token().LookupSelfWithContext(ctx); err != nil {
			t.Fatalf("%s refused 3s before the session's end: %v", what, err)
		}
	}
	// ...and is refused by Vault alone right after it.
	time.Sleep(time.Until(s.ExpiresAt))
	if err := waitRefused(ctx, c, 2*time.Second); err != nil {
		t.Errorf("session token: %v", err)
	}
	if err := waitRefused(ctx, cc, 5*time.Second); err != nil {
		t.Errorf("child token: %v", err)
	}
	if err := waitLeaseGone(ctx, srv, certLease, 10*time.Second); err != nil {
		t.Error(err)
	}
}

// waitRefused polls lookup-self until Vault refuses c's token (403).
func waitRefused(ctx context.Context, c *api.Client, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := c.Auth().Token().LookupSelfWithContext(ctx)
		if isForbidden(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("still accepted %s after the session's end (last lookup-self error: %v)", limit, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tokenExpiry is the token's expire_time as Vault reports it.
func tokenExpiry(ctx context.Context, t *testing.T, c *api.Client) time.Time {
	t.Helper()
	self, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatalf("lookup-self: %v", err)
	}
	s, _ := self.Data["expire_time"].(string)
	exp, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("lookup-self expire_time %q: %v", s, err)
	}
	return exp
}

func tokenLease(t *testing.T, g providers.Grant) leases.Lease {
	t.Helper()
	for _, l := range g.Leases {
		if l.Kind == vault.KindToken {
			return l
		}
	}
	t.Fatalf("no token lease in %v", providertest.LeasesOf(g.Leases))
	return leases.Lease{}
}

// vaultCLI runs the real vault CLI as an agent inside the session would,
// with the session token in VAULT_TOKEN and nothing else of the host's.
// Its output is dropped: on success it prints the token.
func vaultCLI(t *testing.T, srv *vaulttest.Server, token string, args ...string) error {
	t.Helper()
	cmd := exec.Command(vaulttest.Binary(), args...)
	cmd.Env = []string{"VAULT_ADDR=" + srv.Addr, "VAULT_TOKEN=" + token, "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
	return cmd.Run()
}
