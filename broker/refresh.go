package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// errFenced says why a refresh may not go on: the session is no longer
// active, an incident is declared, or the lease is gone.
var errFenced = errors.New("refresh fenced")

// renewOne renews one lease under its session's lock. The refresher's
// listing may be stale by then (revoke --all, an end, another broker's
// incident notice), so the session, the incident lock and the lease are
// read again from the store before the provider is called and again before
// anything is recorded or written. A renewal that is fenced off, or that
// cannot be recorded, is revoked and never reaches the session dir:
// nothing the store does not know is handed out.
func (b *Broker) renewOne(ctx context.Context, s leases.Session, l leases.Lease) {
	unlock := b.lock(s.ID)
	defer unlock()
	p, ok := b.provs.Get(l.Provider)
	if !ok {
		return
	}
	if err := b.mayRefresh(ctx, s.ID, l.ID); err != nil {
		b.log.Info("refresh skipped", "session", s.ID, "lease", l.ID, "reason", err)
		return
	}
	ps := providers.Session{ID: s.ID, Role: s.Role, TTL: s.ExpiresAt.Sub(s.CreatedAt), ExpiresAt: s.ExpiresAt}
	g, err := p.Renew(ctx, ps, l, sessionFiles{b.env, s.ID})
	if err != nil {
		if errors.Is(err, providers.ErrNotRenewable) {
			l.Renewable = false
			_ = b.store.UpdateLease(ctx, l)
			return
		}
		b.log.Warn("renew failed", "session", s.ID, "lease", l.ID, "err", err)
		b.record(Event{Event: EvLeaseRenew, Session: s.ID, Provider: l.Provider, Lease: l.ID, Error: err.Error()})
		return
	}
	b.at("refresh-after-renew")
	if err := b.mayRefresh(ctx, s.ID, l.ID); err != nil {
		b.discardRenewal(ctx, p, s, g, err)
		return
	}
	for i := range g.Leases {
		g.Leases[i].NextAttempt = b.renewalMark(ctx, g.Leases[i])
	}
	for _, nl := range g.Leases {
		if err := b.store.UpdateLease(ctx, nl); err != nil {
			b.discardRenewal(ctx, p, s, g, fmt.Errorf("record renewed lease %s: %w", nl.ID, err))
			return
		}
	}
	b.at("refresh-after-record")
	b.fingerprint(s.ID, l.Provider, g.Secrets)
	if g, err = b.deliverRenewal(s, l.Provider, g); err != nil {
		// The new real values are recorded and revoked with the session;
		// the sandbox keeps its placeholders, which stay on the old ones.
		b.log.Error("proxy: take the renewed credentials", "session", s.ID, "lease", l.ID, "err", err)
		return
	}
	b.cache.putLeases(s.ID, g.Leases)
	for _, nl := range g.Leases {
		b.record(Event{Event: EvLeaseRenew, Session: s.ID, Provider: l.Provider, Lease: nl.ID, External: nl.ExternalID, Expires: nl.ExpiresAt})
	}
	if len(g.Files) > 0 {
		// Env values are fixed for a session's life; renewals rewrite files.
		if err := b.env.Update(s.ID, s.UID, g.Files, nil); err != nil {
			b.log.Error("rewrite refreshed files", "session", s.ID, "err", err)
		}
	}
}

// renewalMark is the early-renewal mark (NextAttempt) the renewed lease nl
// keeps: none when this renewal issued its key after the mark was due (it
// is the renewal the mark asked for), the stored one when the mark was set
// while this renewal ran, for a cut-off later than its key (a fallback
// that denies it too).
func (b *Broker) renewalMark(ctx context.Context, nl leases.Lease) time.Time {
	cur, err := b.store.GetLease(ctx, nl.ID)
	if err != nil || !cur.NextAttempt.After(nl.IssuedAt) {
		return time.Time{}
	}
	return cur.NextAttempt
}

// mayRefresh reports (errFenced, wrapped) why lease id of session may not be
// renewed now; the caller holds the session lock. Each check reads the
// store, not the cache: another broker may have changed it. A store that
// cannot answer fences too (fail closed).
func (b *Broker) mayRefresh(ctx context.Context, session, lease string) error {
	s, err := b.store.GetSession(ctx, session)
	if err != nil {
		return fmt.Errorf("%w: read session: %v", errFenced, err)
	}
	if s.State != leases.SessionActive {
		return fmt.Errorf("%w: session is %s", errFenced, s.State)
	}
	if err := b.checkNoIncident(ctx, "before refreshing"); err != nil {
		return fmt.Errorf("%w: %v", errFenced, err)
	}
	l, err := b.store.GetLease(ctx, lease)
	if err != nil {
		return fmt.Errorf("%w: read lease: %v", errFenced, err)
	}
	if l.State != leases.LeaseActive {
		return fmt.Errorf("%w: lease is %s", errFenced, l.State)
	}
	return nil
}

// discardRenewal revokes what a renewal issued that will not be recorded
// or written (why says why). The leases carry their new expiry, so the
// revocation covers the new credential for its whole life. A revocation
// that fails is recorded as pending, to be retried like any other.
func (b *Broker) discardRenewal(ctx context.Context, p providers.Provider, s leases.Session, g providers.Grant, why error) {
	b.log.Warn("refresh discarded: what it issued is revoked and not handed out", "session", s.ID, "provider", p.Name(), "reason", why)
	b.record(Event{Event: EvLeaseRenew, Session: s.ID, Provider: p.Name(), Error: "discarded: " + why.Error()})
	for _, nl := range g.Leases {
		err := b.revokeTimed(ctx, p, nl)
		var notice *providers.Notice
		if err == nil || errors.Is(err, providers.ErrAlreadyRevoked) || errors.As(err, &notice) {
			b.record(Event{Event: EvLeaseRevoke, Session: s.ID, Provider: p.Name(), Lease: nl.ID, External: nl.ExternalID, Reason: "refresh discarded"})
			continue
		}
		b.log.Error("revoke a discarded renewal; recording it as pending", "session", s.ID, "lease", nl.ID, "err", err)
		nl.State, nl.Attempts, nl.LastError, nl.NextAttempt = leases.LeaseRevokePending, 1, err.Error(), b.now().Add(backoff(1))
		b.cache.putLeases(s.ID, []leases.Lease{nl})
		uerr := b.store.UpdateLease(ctx, nl)
		if errors.Is(uerr, leases.ErrNotFound) {
			uerr = b.store.RecordLeases(ctx, "", []leases.Lease{nl})
		}
		if uerr != nil {
			b.log.Error("record the pending revocation of a discarded renewal", "session", s.ID, "lease", nl.ID, "err", uerr)
		}
		b.record(Event{Event: EvLeaseRevokeFail, Session: s.ID, Provider: p.Name(), Lease: nl.ID, External: nl.ExternalID, Reason: "refresh discarded", Error: err.Error()})
	}
}
