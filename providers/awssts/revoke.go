package awssts

import (
	"context"
	"fmt"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// Revoke makes every credential of the lease's session invalid: all of a
// session's keys (first mint and refreshes) share its session id, which is
// what the revocation keys on. Idempotent.
func (p *Provider) Revoke(ctx context.Context, l leases.Lease) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	until := l.ExpiresAt
	if until.IsZero() {
		until = p.now().Add(12 * time.Hour) // unknown: the longest STS allows
	}
	if err := p.rev.revokeSession(ctx, l.SessionID, l.Data["role_arn"], until); err != nil {
		return fmt.Errorf("aws: revoke session %s: %w", l.SessionID, err)
	}
	return nil
}

// RevokeAll makes every credential the broker issued invalid: one call per
// assumed role (IAM) or one call in all (MinIO). It covers the leases its
// calls reached: IAM, those of the roles this broker's config assumes;
// MinIO, those whose token has this broker's identity as its parent.
func (p *Provider) RevokeAll(ctx context.Context, ls []leases.Lease) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	covered, err := p.rev.revokeAll(ctx, ls)
	if err != nil {
		return covered, fmt.Errorf("aws: revoke all: %w", err)
	}
	return covered, nil
}

// checkMintable refuses to mint for roleARN while a cut-off on it (revoke
// --all's, or an overflowing deny policy's) is still in the future: AWS
// would deny the new credentials at once.
func (p *Provider) checkMintable(roleARN string) error {
	from := p.rev.mintableFrom(roleARN)
	if now := p.now(); now.Before(from) {
		return fmt.Errorf("aws: the revocation policy of %s denies every credential AWS issues before %s (revoke --all or a full deny policy, plus a %s margin for clock skew); "+
			"new AWS credentials would be denied at once, so none are minted until then: retry in %s",
			roleARN, from.UTC().Format(time.RFC3339), RevokeAllSkew, from.Sub(now).Round(time.Second))
	}
	return nil
}

// FindOrphans cannot list STS credentials (no such API), but it does not
// need to: revocation keys on the session id, so a lease for the session
// revokes whatever a crashed mint may have issued, and revoking nothing is
// harmless.
func (p *Provider) FindOrphans(_ context.Context, sessionID string, known []leases.Lease) ([]leases.Lease, error) {
	for _, l := range known {
		if l.Provider == Name {
			return nil, nil
		}
	}
	return []leases.Lease{{
		ID: leaseID(sessionID), SessionID: sessionID, Provider: Name, Kind: KindSTS,
		IssuedAt: p.now(), State: leases.LeaseRevokePending, Data: map[string]string{},
	}}, nil
}
