package vault_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/sqlite"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/providertest"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// devRole is the example agent-dev role: KV plus a lease-producing PKI cert.
var devRole = configs.Role{
	Name: "agent-dev",
	Vault: &configs.VaultRole{
		Policies: []string{"agent-dev"},
		Secrets: []configs.VaultSecret{
			{Name: "config", Path: "secret/data/agent/dev/config", Method: "read"},
			{Name: "cert", Path: "pki/issue/agent-dev", Method: "write", Data: map[string]any{"common_name": "a.credbroker.local", "ttl": "10m"}},
		},
	},
}

func newProvider(t *testing.T, srv *vaulttest.Server) (*vault.Provider, leases.Store) {
	t.Helper()
	return newProviderWithRole(t, srv, vaulttest.TokenRole)
}

// newProviderWithRole is newProvider creating session tokens through
// tokenRole.
func newProviderWithRole(t *testing.T, srv *vaulttest.Server, tokenRole string) (*vault.Provider, leases.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t.Setenv("CREDBROKER_TEST_VAULT_TOKEN", vaulttest.RootToken)
	p, err := vault.New(context.Background(), configs.VaultProvider{
		Address:   srv.Addr,
		Auth:      configs.VaultAuth{TokenEnv: "CREDBROKER_TEST_VAULT_TOKEN"},
		TokenRole: tokenRole,
		EpochTTL:  configs.Duration(2 * time.Hour),
	}, storeJournal{st}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p, st
}

// sessionClient is a Vault client that uses the grant's session token.
func sessionClient(t *testing.T, srv *vaulttest.Server, g providers.Grant) *api.Client {
	c, err := srv.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(g.Files[vault.TokenFile].Reveal())
	return c
}

func TestConformance(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	providertest.Run(t, func(t *testing.T) providertest.Harness {
		p, _ := newProvider(t, srv)
		return providertest.Harness{
			Provider: p,
			Role:     devRole,
			Use: func(ctx context.Context, g providers.Grant) error {
				_, err := sessionClient(t, srv, g).Logical().ReadWithContext(ctx, "secret/data/agent/dev/config")
				return err
			},
			Denied: func(ctx context.Context, g providers.Grant) error {
				c := sessionClient(t, srv, g)
				for _, path := range []string{"secret/data/agent/readonly/config", "sys/policies/acl/agent-dev"} {
					_, err := c.Logical().ReadWithContext(ctx, path)
					if !isForbidden(err) {
						return fmt.Errorf("read %s with a session token: got %v, want 403", path, err)
					}
				}
				return nil
			},
			Rejected: func(ctx context.Context, g providers.Grant) error {
				_, err := sessionClient(t, srv, g).Auth().Token().LookupSelfWithContext(ctx)
				if !isForbidden(err) {
					return fmt.Errorf("session token still valid: lookup-self gave %v", err)
				}
				// Vault revokes the leases of a revoked token in the
				// background (it expires them at once and its expiration
				// manager revokes them): poll for that, bounded.
				for _, l := range g.Leases {
					if l.Kind != vault.KindSecret {
						continue
					}
					if err := waitLeaseGone(ctx, srv, l.ExternalID, 10*time.Second); err != nil {
						return err
					}
				}
				return nil
			},
		}
	})
}

// waitLeaseGone polls sys/leases/lookup until Vault no longer knows the lease.
func waitLeaseGone(ctx context.Context, srv *vaulttest.Server, leaseID string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		_, err := srv.Client.Logical().WriteWithContext(ctx, "sys/leases/lookup", map[string]any{"lease_id": leaseID})
		if err != nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lease %s still exists %s after revocation", leaseID, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func isForbidden(err error) bool {
	var re *api.ResponseError
	return errors.As(err, &re) && re.StatusCode == 403
}

// TestSessionTokenHasExactlyRolePolicies checks with sys/capabilities-self
// that the token can use its role's paths and nothing else.
func TestSessionTokenHasExactlyRolePolicies(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	p, _ := newProvider(t, srv)
	ctx := context.Background()
	ro := configs.Role{Name: "agent-readonly", Vault: &configs.VaultRole{Policies: []string{"agent-readonly"}}}
	s := providertest.NewSession(ro.Name, 5*time.Minute)
	g, err := p.Mint(ctx, s, ro)
	if err != nil {
		t.Fatal(err)
	}
	c := sessionClient(t, srv, g)
	self, err := c.Auth().Token().LookupSelfWithContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pol, _ := self.TokenPolicies()
	slices.Sort(pol)
	if !slices.Equal(pol, []string{"agent-readonly", "default"}) {
		t.Errorf("token policies = %v, want [agent-readonly default]", pol)
	}
	meta, _ := self.TokenMetadata()
	if meta["credbroker_session"] != s.ID || meta["credbroker_role"] != ro.Name {
		t.Errorf("token metadata = %v, want session %s and role %s", meta, s.ID, ro.Name)
	}
	if ttl, _ := self.TokenTTL(); ttl > 5*time.Minute || ttl < 4*time.Minute {
		t.Errorf("token ttl = %v, want the session's 5m", ttl)
	}
	cases := []struct {
		path string
		want []string
	}{
		{"secret/data/agent/readonly/config", []string{"read"}},
		{"secret/data/shared/build", []string{"read"}},
		{"secret/data/agent/dev/config", []string{"deny"}},
		{"pki/issue/agent-dev", []string{"deny"}},
		{"sys/policies/acl/agent-readonly", []string{"deny"}},
		{"auth/token/create", []string{"deny"}},
	}
	for _, tc := range cases {
		got, err := c.Sys().CapabilitiesSelfWithContext(ctx, tc.path)
		if err != nil {
			t.Fatalf("capabilities-self %s: %v", tc.path, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("capabilities on %s = %v, want %v", tc.path, got, tc.want)
		}
	}
}

// TestTokenRoleCapsPolicies shows that a policy outside the token role's
// allowed_policies is refused by Vault, whatever the broker asks for.
func TestTokenRoleCapsPolicies(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	p, _ := newProvider(t, srv)
	bad := configs.Role{Name: "greedy", Vault: &configs.VaultRole{Policies: []string{"admin"}}}
	_, err := p.Mint(context.Background(), providertest.NewSession(bad.Name, time.Minute), bad)
	if err == nil {
		t.Fatal("minting a policy outside the token role succeeded")
	}
}

// TestFailedSecretRevokesToken: a secret that cannot be read fails the mint
// and leaves no valid token behind.
func TestFailedSecretRevokesToken(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	p, _ := newProvider(t, srv)
	ctx := context.Background()
	role := configs.Role{Name: "agent-readonly", Vault: &configs.VaultRole{
		Policies: []string{"agent-readonly"},
		Secrets:  []configs.VaultSecret{{Name: "nope", Path: "secret/data/agent/dev/config", Method: "read"}},
	}}
	s := providertest.NewSession(role.Name, time.Minute)
	if _, err := p.Mint(ctx, s, role); err == nil {
		t.Fatal("mint with an unreadable secret succeeded")
	}
	left, err := p.FindOrphans(ctx, s.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Fatalf("%d tokens of the failed session are still valid", len(left))
	}
}

// TestSessionLeasesNeedNoRenewal: the session token already lives to the
// session's end and cannot be extended, and PKI certificates are not
// renewable; Renew says so for both instead of failing.
func TestSessionLeasesNeedNoRenewal(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	p, _ := newProvider(t, srv)
	ctx := context.Background()
	s := providertest.NewSession(devRole.Name, 10*time.Minute)
	g, err := p.Mint(ctx, s, devRole)
	if err != nil {
		t.Fatal(err)
	}
	var tokLease, certLease leases.Lease
	for _, l := range g.Leases {
		switch l.Kind {
		case vault.KindToken:
			tokLease = l
		case vault.KindSecret:
			certLease = l
		}
	}
	if tokLease.ID == "" || certLease.ID == "" {
		t.Fatalf("want a token lease and a PKI lease, got %v", providertest.LeasesOf(g.Leases))
	}
	if got := tokLease.ExpiresAt; got.After(s.ExpiresAt) || got.Before(s.ExpiresAt.Add(-3*time.Second)) {
		t.Errorf("token expires %v; want at the session's end %v (at most 3s before)", got, s.ExpiresAt)
	}
	// Recorded as renewable or not (a record from an older broker says it
	// is), Vault refuses and Renew says so.
	forced := tokLease
	forced.Renewable = true
	for _, l := range []leases.Lease{tokLease, forced, certLease} {
		if _, err := p.Renew(ctx, s, l, providertest.Files(g.Files)); !errors.Is(err, providers.ErrNotRenewable) {
			t.Errorf("renew %s lease (recorded renewable=%v): got %v, want ErrNotRenewable", l.Kind, l.Renewable, err)
		}
	}
}

// storeJournal is the providers.Journal of these tests: the store itself,
// without the broker's audit (the daemon uses broker.NewJournal).
type storeJournal struct{ st leases.Store }

func (j storeJournal) Intend(ctx context.Context, in leases.Intent) error {
	return j.st.PutIntent(ctx, in)
}

func (j storeJournal) Record(ctx context.Context, intentID string, ls []leases.Lease) error {
	return j.st.RecordLeases(ctx, intentID, ls)
}

func (j storeJournal) Abandon(ctx context.Context, intentID string) error {
	return j.st.DeleteIntent(ctx, intentID)
}
