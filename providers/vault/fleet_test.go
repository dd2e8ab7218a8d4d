package vault_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/sqlite"
	"github.com/credbroker/credbroker/providers/providertest"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// Two brokers (hosts a and b) sharing one store: each records its epoch as
// its own host's, in the store and in Vault's metadata, and recovers only
// its own after a crash; RevokeAll on either revokes both epochs.
func TestEpochsPerHost(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t.Setenv("CREDBROKER_TEST_VAULT_TOKEN", vaulttest.RootToken)
	cfg := configs.VaultProvider{
		Address: srv.Addr, Auth: configs.VaultAuth{TokenEnv: "CREDBROKER_TEST_VAULT_TOKEN"},
		TokenRole: vaulttest.TokenRole, EpochTTL: configs.Duration(2 * time.Hour),
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ro := configs.Role{Name: "agent-readonly", Vault: &configs.VaultRole{Policies: []string{"agent-readonly"}}}
	tokens := map[string]string{}
	for _, host := range []string{"a", "b"} {
		p, err := vault.New(ctx, cfg, storeJournal{st}, log, vault.WithHostID(host))
		if err != nil {
			t.Fatal(err)
		}
		g, err := p.Mint(ctx, providertest.NewSession(ro.Name, 5*time.Minute), ro)
		if err != nil {
			t.Fatal(err)
		}
		tokens[host] = g.Files[vault.TokenFile].Reveal()
		epochs, err := st.ListLeases(ctx, leases.BrokerSession(host))
		if err != nil || len(epochs) != 1 {
			t.Fatalf("epochs of %s: %v, %v; want 1", host, epochs, err)
		}
		sec, err := srv.Client.Auth().Token().LookupAccessor(epochs[0].ExternalID)
		if err != nil {
			t.Fatal(err)
		}
		if meta, _ := sec.TokenMetadata(); meta["credbroker_session"] != leases.BrokerSession(host) {
			t.Errorf("epoch of %s has metadata %v", host, meta)
		}
		// Crash recovery for this host finds none of the other's epochs.
		orphans, err := p.FindOrphans(ctx, leases.BrokerSession(host), epochs)
		if err != nil || len(orphans) != 0 {
			t.Errorf("orphans of %s: %v, %v; want none", host, orphans, err)
		}
	}
	a, err := vault.New(ctx, cfg, storeJournal{st}, log, vault.WithHostID("a"))
	if err != nil {
		t.Fatal(err)
	}
	// The broker hands RevokeAll every lease of the provider in the store,
	// both hosts' epochs included.
	all, err := st.ListLeases(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeAll(ctx, all); err != nil {
		t.Fatal(err)
	}
	for host, tok := range tokens {
		c, _ := srv.Client.Clone()
		c.SetToken(tok)
		if _, err := c.Auth().Token().LookupSelf(); err == nil {
			t.Errorf("the session token minted by %s survived RevokeAll on a", host)
		}
	}
}
