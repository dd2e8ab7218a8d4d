package vault_test

import (
	"cmp"
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
	"github.com/credbroker/credbroker/providers/providertest"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// An epoch takes WithEpochSessions session tokens, then the next session
// starts a new one: 5 sessions at 2 per epoch make 3 epochs, each recorded,
// with sessions 1-2, 3-4 and 5 below them (revoking each epoch alone kills
// exactly those).
func TestEpochSessionsSplitTheTree(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	ctx := context.Background()
	p, st := newCappedProvider(t, srv, 2)
	toks := mintMany(t, p, 5)
	epochs, err := st.ListLeases(ctx, leases.BrokerSessionID)
	if err != nil || len(epochs) != 3 {
		t.Fatalf("epochs after 5 sessions at 2 per epoch: %v, %v; want 3", epochs, err)
	}
	var groups [][]int
	for _, e := range epochs {
		before := valid(t, srv, toks)
		if _, err := srv.Client.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": e.ExternalID}); err != nil {
			t.Fatal(err)
		}
		var died []int
		for i, ok := range valid(t, srv, toks) {
			if before[i] && !ok {
				died = append(died, i)
			}
		}
		groups = append(groups, died)
	}
	slices.SortFunc(groups, func(a, b []int) int { return cmp.Compare(a[0], b[0]) })
	if want := [][]int{{0, 1}, {2, 3}, {4}}; fmt.Sprint(groups) != fmt.Sprint(want) {
		t.Errorf("session tokens below each epoch: %v, want %v", groups, want)
	}
}

// RevokeAll revokes every epoch, full ones included: from the store's
// leases, and from memory when the store gave none (it could not be read).
func TestRevokeAllRevokesFullEpochs(t *testing.T) {
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	for _, fromStore := range []bool{true, false} {
		t.Run(fmt.Sprint("from store ", fromStore), func(t *testing.T) {
			ctx := context.Background()
			p, st := newCappedProvider(t, srv, 2)
			toks := mintMany(t, p, 5)
			var ls []leases.Lease
			if fromStore {
				var err error
				if ls, err = st.ListLeases(ctx, ""); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := p.RevokeAll(ctx, ls); err != nil {
				t.Fatal(err)
			}
			for i, ok := range valid(t, srv, toks) {
				if ok {
					t.Errorf("session token %d is valid after RevokeAll", i)
				}
			}
		})
	}
}

func mintMany(t *testing.T, p *vault.Provider, n int) []string {
	t.Helper()
	ro := configs.Role{Name: "agent-readonly", Vault: &configs.VaultRole{Policies: []string{"agent-readonly"}}}
	var toks []string
	for range n {
		g, err := p.Mint(context.Background(), providertest.NewSession(ro.Name, 5*time.Minute), ro)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, g.Files[vault.TokenFile].Reveal())
	}
	return toks
}

// valid asks Vault (lookup-self) whether each token still authenticates.
func valid(t *testing.T, srv *vaulttest.Server, toks []string) []bool {
	t.Helper()
	out := make([]bool, len(toks))
	for i, tok := range toks {
		c, _ := srv.Client.Clone()
		c.SetToken(tok)
		_, err := c.Auth().Token().LookupSelf()
		var re *api.ResponseError
		if err != nil && (!errors.As(err, &re) || re.StatusCode != 403) {
			t.Fatalf("lookup-self of session token %d: %v", i, err)
		}
		out[i] = err == nil
	}
	return out
}

// newCappedProvider is newProvider with n sessions per epoch.
func newCappedProvider(t *testing.T, srv *vaulttest.Server, n int) (*vault.Provider, leases.Store) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	t.Setenv("CREDBROKER_TEST_VAULT_TOKEN", vaulttest.RootToken)
	p, err := vault.New(context.Background(), configs.VaultProvider{
		Address: srv.Addr, Auth: configs.VaultAuth{TokenEnv: "CREDBROKER_TEST_VAULT_TOKEN"},
		TokenRole: vaulttest.TokenRole, EpochTTL: configs.Duration(2 * time.Hour),
	}, storeJournal{st}, slog.New(slog.NewTextHandler(io.Discard, nil)), vault.WithEpochSessions(n))
	if err != nil {
		t.Fatal(err)
	}
	return p, st
}
