package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// A session start commits twice whatever its number of providers: the
// session row with every provider's intent before the first mint
// (beginStart; durability rule 1), then every provider's leases with the
// deletion of their intents before the dir is written (recordAll; rule
// 2). The providers are asked concurrently in between.

// startIntents returns the write-ahead intents of a start, one per provider
// of the role, in the role's provider order.
func (b *Broker) startIntents(s leases.Session, role configs.Role) []leases.Intent {
	names := role.ProviderNames()
	ins := make([]leases.Intent, len(names))
	now := b.now()
	for i, name := range names {
		ins[i] = leases.Intent{ID: s.ID + "/" + name, SessionID: s.ID, Provider: name, CreatedAt: now}
	}
	return ins
}

// beginStart records the starting session and the intents of every
// provider: in one transaction when the store is a leases.Batcher, else
// one call each. created reports whether the session row was written (a
// start that failed after it must end the session); err wraps
// ErrStoreUnavailable, and nothing is minted when it is set.
func (b *Broker) beginStart(ctx context.Context, s leases.Session, ins []leases.Intent) (created bool, err error) {
	if bs, ok := b.store.(leases.Batcher); ok {
		if err := bs.BeginSession(ctx, s, ins); err != nil {
			return false, fmt.Errorf("%w: cannot record the session, so nothing was minted (credbroker fails closed): %v", ErrStoreUnavailable, err)
		}
		return true, nil
	}
	if err := b.store.CreateSession(ctx, s); err != nil {
		return false, fmt.Errorf("%w: cannot record the session, so nothing was minted (credbroker fails closed): %v", ErrStoreUnavailable, err)
	}
	for i, in := range ins {
		if err := b.store.PutIntent(ctx, in); err != nil {
			for _, put := range ins[:i] {
				// Nothing was minted for them; a leftover is settled by the loop.
				_ = b.store.DeleteIntent(ctx, put.ID)
			}
			return true, fmt.Errorf("%w: record the intent to mint %s (nothing minted): %v", ErrStoreUnavailable, in.Provider, err)
		}
	}
	return true, nil
}

// minted is what one provider's mint produced.
type minted struct {
	p      providers.Provider
	intent leases.Intent
	g      providers.Grant
	err    error
	// leftover: the mint failed and the provider could not clean up; its
	// leases are recorded as pending revocation.
	leftover bool
}

// mintAll mints every provider of the role concurrently (their intents
// are durable already, see beginStart), then records every lease in one
// transaction (recordAll).
func (b *Broker) mintAll(ctx context.Context, s leases.Session, role configs.Role, ins []leases.Intent) ([]providers.Grant, error) {
	ps := providers.Session{ID: s.ID, Role: s.Role, TTL: s.ExpiresAt.Sub(s.CreatedAt), ExpiresAt: s.ExpiresAt}
	rs := make([]minted, len(ins))
	var wg sync.WaitGroup
	for i, in := range ins {
		p, _ := b.provs.Get(in.Provider)
		wg.Go(func() { rs[i] = b.mintOne(ctx, p, ps, role, in) })
	}
	wg.Wait()
	b.recordAll(ctx, s, rs)
	var failed []string
	kind := ErrProvider
	grants := make([]providers.Grant, len(rs))
	for i, r := range rs {
		grants[i] = r.g
		if r.err != nil {
			msg := r.err.Error() // provider errors name their provider
			if errors.Is(r.err, ErrStoreUnavailable) {
				kind = ErrStoreUnavailable
				msg = strings.TrimPrefix(msg, ErrStoreUnavailable.Error()+": ")
			}
			failed = append(failed, msg)
		}
	}
	if len(failed) > 0 {
		return nil, fmt.Errorf("%w: %s", kind, strings.Join(failed, "; "))
	}
	return grants, nil
}

// mintOne asks one provider. A failed mint is cleaned up here: what the
// provider could not revoke is kept for recordAll as pending, and an
// intent that produced nothing is settled (or left to the loop).
func (b *Broker) mintOne(ctx context.Context, p providers.Provider, s providers.Session, role configs.Role, in leases.Intent) minted {
	start := time.Now()
	g, err := p.Mint(ctx, s, role)
	b.metrics.Mint(p.Name(), time.Since(start), err == nil)
	b.at("after-mint")
	r := minted{p: p, intent: in, g: g, err: err}
	if err == nil {
		return r
	}
	r.g = providers.Grant{}
	if len(g.Leases) > 0 {
		// The provider could not clean up: keep what it left as pending.
		r.g.Leases = g.Leases
		for i := range r.g.Leases {
			r.g.Leases[i].State = leases.LeaseRevokePending
		}
		r.leftover = true
	} else if serr := b.settleIntent(ctx, in); serr != nil {
		// A failed call may have reached the server and only its answer
		// been lost (Vault made the token, STS issued the keys): ask the
		// server as after a crash. If it cannot answer now, the intent
		// stays and the loop asks again.
		b.log.Warn("settle the intent of a failed mint; the loop retries it", "intent", in.ID, "err", serr)
	}
	return r
}

// recordAll records the leases of every mint in rs, and deletes their
// intents, in one transaction (one per provider when the store is no
// leases.Batcher). Leases not recorded are revoked at once; if that fails
// too their intent remains and the reconciler retries. It sets the err of
// each result whose leases could not be recorded.
func (b *Broker) recordAll(ctx context.Context, s leases.Session, rs []minted) {
	var sets []leases.LeaseSet
	var of []int // rs index of each set
	for i, r := range rs {
		if r.err == nil || r.leftover {
			sets = append(sets, leases.LeaseSet{IntentID: r.intent.ID, Leases: r.g.Leases})
			of = append(of, i)
		}
	}
	if len(sets) == 0 {
		return
	}
	errs := b.recordSets(ctx, sets)
	b.at("after-record")
	var wg sync.WaitGroup
	for k, i := range of {
		r := &rs[i]
		switch {
		case errs[k] != nil && r.leftover:
			b.log.Error("record leases left by a failed mint; the reconciler will find them", "session", s.ID, "provider", r.p.Name(), "err", errs[k])
		case errs[k] != nil:
			ls := r.g.Leases
			r.g = providers.Grant{}
			wg.Go(func() { r.err = b.revokeUnrecorded(ctx, r.p, ls, errs[k]) })
		case !r.leftover:
			b.cache.putLeases(s.ID, r.g.Leases)
			b.fingerprint(s.ID, r.p.Name(), r.g.Secrets)
			for _, l := range r.g.Leases {
				b.record(Event{Event: EvLeaseMint, Session: s.ID, Role: s.Role, Provider: r.p.Name(), Lease: l.ID, External: l.ExternalID, Expires: l.ExpiresAt})
			}
		}
	}
	wg.Wait()
}

// recordSets writes sets in one transaction when the store is a
// leases.Batcher (every set gets its error), else one RecordLeases each.
func (b *Broker) recordSets(ctx context.Context, sets []leases.LeaseSet) []error {
	errs := make([]error, len(sets))
	if bs, ok := b.store.(leases.Batcher); ok {
		err := bs.RecordLeaseSets(ctx, sets)
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, set := range sets {
		errs[i] = b.store.RecordLeases(ctx, set.IntentID, set.Leases)
	}
	return errs
}

// revokeUnrecorded revokes leases the store could not record (not
// recorded means not known) and returns the start's error for them.
func (b *Broker) revokeUnrecorded(ctx context.Context, p providers.Provider, ls []leases.Lease, storeErr error) error {
	done := "what was minted is revoked"
	for _, l := range ls {
		if rerr := b.revokeTimed(ctx, p, l); rerr != nil {
			b.log.Error("revoke unrecorded lease", "lease", l.ID, "err", rerr)
			done = "revoking what was minted failed too; the write-ahead intent makes the broker find and revoke it once the store is back"
		}
	}
	return fmt.Errorf("%w: record the leases of %s (%s): %v", ErrStoreUnavailable, p.Name(), done, storeErr)
}
