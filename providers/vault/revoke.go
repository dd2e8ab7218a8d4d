package vault

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Renew extends a secret lease (with the session token, read back from the
// session dir) up to the session's end. Session tokens are created
// non-renewable and ending with their session, so only a token lease
// recorded as renewable (by an older broker) is renewed, up to the same end.
func (p *Provider) Renew(ctx context.Context, s providers.Session, l leases.Lease, files providers.FileReader) (providers.Grant, error) {
	inc := int(s.ExpiresAt.Sub(p.now()).Seconds())
	if inc <= 0 || !l.Renewable {
		return providers.Grant{}, providers.ErrNotRenewable
	}
	tok, err := files.ReadFile(TokenFile)
	if err != nil {
		return providers.Grant{}, fmt.Errorf("vault: renew %s: read session token: %w", l.ID, err)
	}
	c, err := p.client.Clone()
	if err != nil {
		return providers.Grant{}, fmt.Errorf("vault: clone client: %w", err)
	}
	c.SetToken(tok.Reveal())
	var ttl int
	switch l.Kind {
	case KindToken:
		sec, err := c.Auth().Token().RenewSelfWithContext(ctx, inc)
		if notRenewable(err) {
			return providers.Grant{}, providers.ErrNotRenewable
		}
		if err != nil {
			return providers.Grant{}, fmt.Errorf("vault: renew token %s: %w", l.ExternalID, describe(err))
		}
		ttl = sec.Auth.LeaseDuration
	case KindSecret:
		sec, err := c.Sys().RenewWithContext(ctx, l.ExternalID, inc)
		if notRenewable(err) {
			return providers.Grant{}, providers.ErrNotRenewable
		}
		if err != nil {
			return providers.Grant{}, fmt.Errorf("vault: renew lease %s: %w", l.ExternalID, describe(err))
		}
		ttl = sec.LeaseDuration
	default:
		return providers.Grant{}, providers.ErrNotRenewable
	}
	nl := l
	nl.IssuedAt = p.now() // the refresher measures the next renewal from here
	nl.ExpiresAt = nl.IssuedAt.Add(time.Duration(ttl) * time.Second)
	if !nl.ExpiresAt.After(l.ExpiresAt) {
		nl.Renewable = false // Vault would not extend it further
	}
	return providers.Grant{Leases: []leases.Lease{nl}}, nil
}

// notRenewable reports whether Vault refused a renewal because the token or
// lease is not renewable, as a session token is.
func notRenewable(err error) bool {
	return isStatus(err, 400) && strings.Contains(err.Error(), "lease is not renewable")
}

// Revoke revokes one lease. Revoking a token by accessor revokes its child
// tokens and every lease it created. Unknown accessors and leases count as
// revoked, so Revoke is idempotent.
func (p *Provider) Revoke(ctx context.Context, l leases.Lease) error {
	switch l.Kind {
	case KindToken, KindEpoch:
		return p.revokeAccessor(ctx, l.ExternalID)
	case KindSecret:
		err := p.client.Sys().RevokeWithContext(ctx, l.ExternalID)
		if err != nil && !isStatus(err, 400, 404) {
			return fmt.Errorf("vault: revoke lease %s: %w", l.ExternalID, describe(err))
		}
		return nil
	default:
		return fmt.Errorf("vault: revoke %s: unknown lease kind %q", l.ID, l.Kind)
	}
}

func (p *Provider) revokeAccessor(ctx context.Context, accessor string) error {
	_, err := p.client.Logical().WriteWithContext(ctx, "auth/token/revoke-accessor", map[string]any{"accessor": accessor})
	if err != nil {
		// Vault answers 400 "invalid accessor" for a token that is gone.
		// While Vault revokes a token tree, an accessor can still resolve
		// but its token be gone: "token not found". Both mean revoked.
		if isStatus(err, 400) && (strings.Contains(err.Error(), "invalid accessor") || strings.Contains(err.Error(), "token not found")) {
			return nil
		}
		return fmt.Errorf("vault: revoke accessor %s: %w", accessor, describe(err))
	}
	return nil
}

// RevokeAll revokes every epoch token in ls (one per DefaultEpochSessions
// sessions and rotation, those of every broker sharing the store included)
// and those in memory: Vault then revokes every session token below them
// and every lease those created. The next Mint starts a new epoch. Running it twice,
// or on two brokers at once, is harmless: a revoked epoch counts as
// revoked. Every session token is a child of an epoch, so when every epoch
// went, every lease in ls is covered; when one failed, only the epochs
// that went are (which sessions hang below which epoch is not recorded).
func (p *Provider) RevokeAll(ctx context.Context, ls []leases.Lease) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// The epoch in memory is revoked even when the store could not be
	// read (ls empty): revocation does not wait for the database.
	accessors := map[string]bool{}
	for _, l := range ls {
		if l.Provider == Name && l.Kind == KindEpoch {
			accessors[l.ExternalID] = true
		}
	}
	if p.epoch != nil {
		accessors[p.epoch.accessor] = true
	}
	for _, e := range p.liveFull() {
		accessors[e.accessor] = true
	}
	failed := map[string]bool{}
	// Each epoch is its own tree (one per broker host, rotation and
	// DefaultEpochSessions sessions):
	// Vault revokes them in parallel.
	var (
		mu   sync.Mutex
		errs []error
		g    errgroup.Group
	)
	g.SetLimit(4)
	for acc := range accessors {
		g.Go(func() error {
			if err := p.revokeAccessor(ctx, acc); err != nil {
				mu.Lock()
				errs = append(errs, err)
				failed[acc] = true
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(errs) > 0 {
		var covered []string
		for _, l := range ls {
			if l.Kind == KindEpoch && !failed[l.ExternalID] {
				covered = append(covered, l.ID)
			}
		}
		return covered, fmt.Errorf("vault: revoke all: %d of %d epochs failed: %w", len(errs), len(accessors), errs[0])
	}
	p.epoch, p.full = nil, nil
	return providers.IDs(ls), nil
}

// FindOrphans lists Vault's token accessors and returns tokens whose
// metadata names sessionID but that are not in known. It needs the "sudo"
// capability on auth/token/accessors and costs one lookup per token in
// Vault, so the reconciler calls it only for intents left by a crash.
func (p *Provider) FindOrphans(ctx context.Context, sessionID string, known []leases.Lease) ([]leases.Lease, error) {
	sec, err := p.client.Logical().ListWithContext(ctx, "auth/token/accessors")
	if err != nil {
		return nil, fmt.Errorf("vault: list token accessors (needs sudo on auth/token/accessors): %w", describe(err))
	}
	if sec == nil {
		return nil, nil
	}
	keys, _ := sec.Data["keys"].([]any)
	isKnown := map[string]bool{}
	for _, l := range known {
		isKnown[l.ExternalID] = true
	}
	var (
		mu    sync.Mutex
		found []leases.Lease
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, k := range keys {
		acc, _ := k.(string)
		if acc == "" || isKnown[acc] {
			continue
		}
		g.Go(func() error {
			ls, err := p.client.Auth().Token().LookupAccessorWithContext(gctx, acc)
			if err != nil {
				if isStatus(err, 400, 403, 404) {
					return nil // gone meanwhile, or not ours to read
				}
				return fmt.Errorf("vault: lookup accessor %s: %w", acc, describe(err))
			}
			meta, _ := ls.Data["meta"].(map[string]any)
			if meta == nil || meta[metaSession] != sessionID {
				return nil
			}
			kind := KindToken
			if leases.IsBrokerSession(sessionID) {
				kind = KindEpoch
			}
			mu.Lock()
			found = append(found, leases.Lease{
				ID: leaseID(kind, acc), SessionID: sessionID, Provider: Name, Kind: kind,
				ExternalID: acc, IssuedAt: p.now(), State: leases.LeaseRevokePending,
			})
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return found, nil
}
