package vault

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
)

// epochClient returns a client authenticated with an epoch token that will
// outlive a session of ttl, creating a new epoch when needed: none yet,
// the current one would not outlive the session, or it took
// p.epochSessions session tokens already (then it is kept in p.full).
// Session tokens are children of the epoch, so revoking the epoch (by
// accessor) revokes every session token and every lease they created in
// one call.
func (p *Provider) epochClient(ctx context.Context, ttl time.Duration) (*api.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epoch == nil || p.epoch.expiresAt.Sub(p.now()) < ttl+configs.EpochMargin || p.epoch.sessions >= p.epochSessions {
		e, err := p.newEpoch(ctx)
		if err != nil {
			return nil, err
		}
		if p.epoch != nil && p.epoch.sessions >= p.epochSessions {
			p.full = append(p.liveFull(), p.epoch)
		}
		p.epoch = e
	}
	p.epoch.sessions++
	c, err := p.client.Clone()
	if err != nil {
		return nil, fmt.Errorf("vault: clone client: %w", err)
	}
	c.SetToken(p.epoch.token.Reveal())
	return c, nil
}

// liveFull returns the full epochs that have not expired (p.mu held).
func (p *Provider) liveFull() []*epoch {
	now := p.now()
	live := p.full[:0]
	for _, e := range p.full {
		if e.expiresAt.After(now) {
			live = append(live, e)
		}
	}
	return live
}

// dropEpoch forgets the current epoch if it is still the one with token tok,
// so the next epochClient call creates a new one.
func (p *Provider) dropEpoch(tok string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.epoch == nil || p.epoch.token.Reveal() != tok {
		return false
	}
	p.epoch = nil
	return true
}

// newEpoch creates an epoch token, recording an intent before and the lease
// after, so a crash in between is found by the reconciler.
func (p *Provider) newEpoch(ctx context.Context) (*epoch, error) {
	intent := leases.Intent{
		ID:        "vault-epoch-" + rand.Text(),
		SessionID: p.self,
		Provider:  Name,
		CreatedAt: p.now(),
	}
	if err := p.journal.Intend(ctx, intent); err != nil {
		return nil, fmt.Errorf("vault: record the intent to create an epoch token (nothing created): %w", err)
	}
	ttl := p.cfg.EpochTTL.D()
	sec, err := p.client.Auth().Token().CreateWithContext(ctx, &api.TokenCreateRequest{
		DisplayName: "credbroker-epoch",
		TTL:         ttl.String(),
		// Made without a token role, so this cap holds for renewals too:
		// nothing, even with the epoch token, keeps the tree past its life.
		ExplicitMaxTTL: ttl.String(),
		Metadata:       map[string]string{metaSession: p.self, metaRole: "epoch"},
	})
	if err != nil {
		// Vault answered with an error: nothing was created, so the intent
		// would only cost the reconciler a scan. (A timeout keeps it.)
		if isStatus(err, 400, 403, 404) {
			_ = p.journal.Abandon(ctx, intent.ID)
		}
		return nil, fmt.Errorf("create epoch token: %w", describe(err))
	}
	if sec == nil || sec.Auth == nil {
		return nil, fmt.Errorf("create epoch token: empty answer")
	}
	now := p.now()
	e := &epoch{
		token:     secret.New(sec.Auth.ClientToken),
		accessor:  sec.Auth.Accessor,
		expiresAt: now.Add(time.Duration(sec.Auth.LeaseDuration) * time.Second),
	}
	l := leases.Lease{
		ID:         leaseID(KindEpoch, e.accessor),
		SessionID:  p.self,
		Provider:   Name,
		Kind:       KindEpoch,
		ExternalID: e.accessor,
		IssuedAt:   now,
		ExpiresAt:  e.expiresAt,
		State:      leases.LeaseActive,
	}
	if err := p.journal.Record(ctx, intent.ID, []leases.Lease{l}); err != nil {
		// Not recorded: do not use it, and try to revoke it now; the intent
		// stays so the reconciler retries if this revoke fails too.
		if rerr := p.revokeAccessor(ctx, e.accessor); rerr != nil {
			p.log.Error("revoke unrecorded epoch token", "accessor", e.accessor, "err", rerr)
		}
		return nil, fmt.Errorf("vault: record the epoch token (revoked at once): %w", err)
	}
	p.log.Info("new epoch token", "accessor", e.accessor, "expires", e.expiresAt)
	return e, nil
}

// leaseID is the path-shaped store id of a Vault credential.
func leaseID(kind, external string) string { return Name + "/" + kind + "/" + external }
