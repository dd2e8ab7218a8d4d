package broker_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// partialProvider's provider-wide call reaches only the credentials whose
// external id starts with "reached-", as a MinIO revoke-tokens call
// reaches only tokens of the broker's own access key, or the IAM deny only
// the roles of the broker's own config. No local server gives two brokers
// of one fleet different reach on demand; the real providers' coverage is
// tested against their servers (providers/providertest, awssts/iam_test).
type partialProvider struct {
	mu      sync.Mutex
	revoked []string // per-lease Revoke calls
}

func (*partialProvider) Name() string { return "partial" }
func (*partialProvider) Mint(context.Context, providers.Session, configs.Role) (providers.Grant, error) {
	return providers.Grant{}, errors.New("not used")
}
func (*partialProvider) Renew(context.Context, providers.Session, leases.Lease, providers.FileReader) (providers.Grant, error) {
	return providers.Grant{}, providers.ErrNotRenewable
}
func (p *partialProvider) Revoke(_ context.Context, l leases.Lease) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revoked = append(p.revoked, l.ID)
	return nil
}
func (*partialProvider) RevokeAll(_ context.Context, ls []leases.Lease) ([]string, error) {
	var covered []string
	for _, l := range ls {
		if strings.HasPrefix(l.ExternalID, "reached-") {
			covered = append(covered, l.ID)
		}
	}
	return covered, nil
}
func (*partialProvider) FindOrphans(context.Context, string, []leases.Lease) ([]leases.Lease, error) {
	return nil, nil
}

// TestRevokeAllDropsOnlyCoveredLeases: revoke --all forgets the leases the
// provider-wide call reached, revokes this broker's others one by one, and
// leaves another broker's unreached lease in the store for that broker
// (reporting the incident incomplete) instead of dropping it while it is
// still valid.
func TestRevokeAllDropsOnlyCoveredLeases(t *testing.T) {
	p := &partialProvider{}
	h := newHarness(t, withProvider(p), asHost("here"))
	ctx := context.Background()
	now := time.Now()
	lease := func(sid, ext string) leases.Lease {
		return leases.Lease{ID: "partial/x/" + ext, SessionID: sid, Provider: "partial", Kind: "x", ExternalID: ext,
			IssuedAt: now, ExpiresAt: now.Add(time.Hour), State: leases.LeaseActive}
	}
	for _, s := range []leases.Session{
		{ID: "s-coveragehere01", Role: "agent-readonly", UID: -1, CreatedAt: now, ExpiresAt: now.Add(time.Hour), State: leases.SessionActive, HostID: "here"},
		{ID: "s-coveragethere1", Role: "agent-readonly", UID: -1, CreatedAt: now, ExpiresAt: now.Add(time.Hour), State: leases.SessionActive, HostID: "there"},
	} {
		if err := h.st.CreateSession(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.st.RecordLeases(ctx, "", []leases.Lease{
		lease("s-coveragehere01", "reached-1"), lease("s-coveragehere01", "missed-here"),
		lease("s-coveragethere1", "reached-2"), lease("s-coveragethere1", "missed-there"),
	}); err != nil {
		t.Fatal(err)
	}
	rep, err := h.b.RevokeAll(ctx, h.caller, "coverage test")
	if !errors.Is(err, broker.ErrPending) || rep.Complete {
		t.Fatalf("revoke all: complete=%v, %v; want incomplete (another broker's lease was not reached)", rep.Complete, err)
	}
	var r broker.ProviderResult
	for _, pr := range rep.Providers {
		if pr.Provider == "partial" {
			r = pr
		}
	}
	if r.Revoked != 3 || r.LeftToHosts != 1 || r.Method != "revoke-all+per-lease" || !slices.Equal(r.LeftHosts, []string{"there"}) {
		t.Errorf("report = %+v; want 3 revoked (2 by the call, 1 by lease), 1 left to its host there", r)
	}
	if !strings.Contains(err.Error(), "(hosts there)") {
		t.Errorf("revoke --all error %q does not name the host left to revoke its own", err)
	}
	if !slices.Equal(p.revoked, []string{"partial/x/missed-here"}) {
		t.Errorf("per-lease revocations = %v; want only this broker's unreached lease", p.revoked)
	}
	left, err := h.st.ListLeases(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range left {
		if l.Provider == "partial" {
			ids = append(ids, l.ID)
		}
	}
	if !slices.Equal(ids, []string{"partial/x/missed-there"}) {
		t.Errorf("leases left in the store = %v; want only the other broker's unreached one", ids)
	}
}

// TestEpochTokenIsAudited: the Vault provider's own epoch token goes
// through the broker's journal, so the audit log names it like any other
// credential (it was recorded in the store only).
func TestEpochTokenIsAudited(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	if _, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-readonly"}); err != nil {
		t.Fatal(err)
	}
	epochs, err := h.st.FindLeases(ctx, leases.LeaseFilter{BrokerOnly: true})
	if err != nil || len(epochs) != 1 {
		t.Fatalf("epoch leases: %v %v; want one", epochs, err)
	}
	audit, err := os.ReadFile(h.audit)
	if err != nil {
		t.Fatal(err)
	}
	want := `"lease":"` + epochs[0].ID + `"`
	if !strings.Contains(string(audit), want) || !strings.Contains(string(audit), "the broker's own epoch") {
		t.Fatalf("the epoch token %s is not in the audit log:\n%s", epochs[0].ID, audit)
	}
}
