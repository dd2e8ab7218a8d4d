package broker_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// noticeProvider answers every revocation with a Notice, as the AWS IAM
// revoker does when it falls back to a TokenIssueTime cut-off (that
// fallback itself is protocol-tested in providers/awssts).
type noticeProvider struct{}

func (noticeProvider) Name() string { return "notice" }
func (noticeProvider) Mint(context.Context, providers.Session, configs.Role) (providers.Grant, error) {
	return providers.Grant{}, nil
}
func (noticeProvider) Renew(context.Context, providers.Session, leases.Lease, providers.FileReader) (providers.Grant, error) {
	return providers.Grant{}, providers.ErrNotRenewable
}
func (noticeProvider) Revoke(context.Context, leases.Lease) error {
	return &providers.Notice{Msg: "fell back to a cut-off on role x"}
}
func (noticeProvider) RevokeAll(_ context.Context, ls []leases.Lease) ([]string, error) {
	return providers.IDs(ls), nil
}
func (noticeProvider) FindOrphans(context.Context, string, []leases.Lease) ([]leases.Lease, error) {
	return nil, nil
}

// TestProviderNoticeIsAuditedAndCountsAsRevoked: a Notice is success (the
// lease is gone, the session ends) and its text lands in the audit log.
func TestProviderNoticeIsAuditedAndCountsAsRevoked(t *testing.T) {
	h := newHarness(t, withProvider(noticeProvider{}))
	ctx := context.Background()
	now := time.Now()
	s := leases.Session{ID: "s-noticetest", Role: "agent-readonly", UID: -1, CreatedAt: now, ExpiresAt: now.Add(time.Hour), State: leases.SessionActive}
	if err := h.st.CreateSession(ctx, s); err != nil {
		t.Fatal(err)
	}
	l := leases.Lease{ID: "notice/x/1", SessionID: s.ID, Provider: "notice", Kind: "x", ExternalID: "1", IssuedAt: now, ExpiresAt: now.Add(time.Hour), State: leases.LeaseActive}
	if err := h.st.RecordLeases(ctx, "", []leases.Lease{l}); err != nil {
		t.Fatal(err)
	}
	si, err := h.b.EndSession(ctx, h.caller, s.ID, "test")
	if err != nil || si.State != string(leases.SessionEnded) {
		t.Fatalf("end: %+v %v; want ended", si, err)
	}
	audit, _ := os.ReadFile(h.audit)
	if !strings.Contains(string(audit), `"event":"provider.notice"`) || !strings.Contains(string(audit), "fell back to a cut-off on role x") {
		t.Fatalf("notice not audited:\n%s", audit)
	}
}
