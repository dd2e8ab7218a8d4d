package broker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// staleIntent is how old an intent must be before the loop treats it as a
// crash's leftover; a session start takes seconds at most.
const staleIntent = 5 * time.Minute

// Tick runs one round of the background work.
func (b *Broker) Tick(ctx context.Context) {
	// What was done while the store was away is recorded first.
	b.flushBacklog(ctx)
	// The incident watch tells at once; this catches what it may have
	// missed (a watch that cannot LISTEN, through a pooler).
	b.CheckIncident(ctx)
	b.registerIfDue(ctx)
	// Intents older than any start can take were left by a reconcile that
	// failed (a server was down at start-up): retry them.
	if _, errs := b.settleIntents(ctx, b.now().Add(-staleIntent)); len(errs) > 0 {
		b.log.Warn("settle stale intents", "err", errors.Join(errs...))
	}
	b.resumeEnds(ctx, b.now().Add(-staleEnd))
	b.reap(ctx)
	if b.guard != nil && b.now().Sub(b.lastPrune) > time.Minute {
		b.lastPrune = b.now()
		if err := b.guard.Prune(); err != nil {
			b.log.Warn("leak guard: prune", "err", err)
		}
	}
	b.retryPending(ctx)
	b.sweepDirs(ctx)
	b.refresh(ctx)
	b.maintainProviders(ctx)
}

// maintainTimeout bounds a provider's background work in one tick.
const maintainTimeout = 10 * time.Second

// maintainProviders runs the background work of the providers that have
// some (providers.Maintainer), such as the Kubernetes provider's Role
// checks, so that session starts need not make those calls.
func (b *Broker) maintainProviders(ctx context.Context) {
	for _, name := range b.provs.Names() {
		p, _ := b.provs.Get(name)
		m, ok := p.(providers.Maintainer)
		if !ok {
			continue
		}
		mctx, cancel := context.WithTimeout(ctx, maintainTimeout)
		if err := m.Maintain(mctx); err != nil {
			b.log.Warn("provider background check", "provider", name, "err", err)
		}
		cancel()
	}
}

// sweepDirs wipes the session dirs on this host whose session is not
// active any more: ended from another broker (a session end there, or
// revoke --all, revokes at the providers but cannot reach this host's
// tmpfs), or written by a start that lost a race with revoke --all. The
// disk is listed before the store: a dir written before the listing
// belongs to a session whose row was committed before it, so the store's
// answer includes it. It also forgets, in memory, sessions that ended.
func (b *Broker) sweepDirs(ctx context.Context) {
	onDisk, err := b.env.List()
	if err != nil {
		return
	}
	listed := b.now()
	ss, err := b.store.ListSessions(ctx, b.own(liveStates...))
	if err != nil {
		return
	}
	active := make(map[string]bool, len(ss))
	live := make(map[string]bool, len(ss))
	for _, s := range ss {
		live[s.ID] = true
		// A starting session's dir is being written under its lock; if
		// that start fails, it wipes the dir itself.
		active[s.ID] = s.State == leases.SessionActive || s.State == leases.SessionStarting
	}
	b.cache.retain(live, listed.Add(-time.Minute))
	var stale []string
	for _, id := range onDisk {
		if !active[id] {
			stale = append(stale, id)
		}
	}
	if len(stale) > 0 {
		b.log.Warn("wiping session dirs whose session is no longer active", "dirs", len(stale))
		b.wipeDirs(stale)
	}
}

// Reconcile settles what a crash left: for every intent, the provider is
// asked for credentials of that session it does not know, and they are
// revoked; a session whose start was interrupted (an intent, or still
// starting: its caller never got an answer) is ended. Sessions whose dirs
// vanished (tmpfs cleared by a reboot) are ended too.
func (b *Broker) Reconcile(ctx context.Context) error {
	interrupted, errs := b.settleIntents(ctx, time.Time{})
	errs = append(errs, b.resumeEnds(ctx, time.Time{})...)
	live, err := b.store.ListSessions(ctx, b.own(leases.SessionStarting, leases.SessionActive))
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, s := range live {
		reason := ""
		switch {
		case interrupted[s.ID]:
			continue
		case s.State == leases.SessionStarting:
			reason = "start interrupted by a broker crash"
		default:
			if _, err := b.env.ReadFile(s.ID, agentenv.MetaFile); err != nil {
				reason = "session dir lost (reboot or tmpfs cleared)"
			}
		}
		if reason == "" {
			continue
		}
		unlock := b.lock(s.ID)
		if err := b.endLocked(ctx, s.ID, reason); err != nil {
			errs = append(errs, err)
		}
		unlock()
	}
	if err := b.env.CleanTemp(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// staleEnd is how long a session may stay "ending" before the loop
// finishes its end: an end in progress takes seconds, and during an
// incident the provider-wide revocation gets incidentGrace first.
const staleEnd = time.Minute

// resumeEnds finishes the ends of this broker's sessions left "ending"
// since before cutoff (zero: all): a crash between marking a session as
// ending and revoking its leases would otherwise leave them valid until
// they expire. At start-up every such session is a crash's leftover.
func (b *Broker) resumeEnds(ctx context.Context, cutoff time.Time) []error {
	ss, err := b.store.ListSessions(ctx, b.own(leases.SessionEnding))
	if err != nil {
		return []error{fmt.Errorf("list ending sessions: %w", err)}
	}
	var errs []error
	for _, s := range ss {
		if !cutoff.IsZero() && !s.EndedAt.Before(cutoff) {
			continue
		}
		unlock := b.lock(s.ID)
		cur, err := b.store.GetSession(ctx, s.ID)
		if err == nil && cur.State == leases.SessionEnding && b.endUnfinished(ctx, s.ID) {
			b.log.Warn("finishing the end of a session left ending", "session", s.ID, "reason", cur.EndReason)
			err = b.endFrom(ctx, cur, nil, cur.EndReason, cur.EndedAt)
		}
		if err != nil && !errors.Is(err, ErrPending) {
			errs = append(errs, fmt.Errorf("finish the end of %s: %w", s.ID, err))
		}
		unlock()
	}
	return errs
}

// endUnfinished reports whether an ending session's end was cut short:
// it has no lease left (only the final mark is missing) or a lease no one
// tried to revoke. Leases already pending are retried by retryPending with
// their backoff, not on every tick.
func (b *Broker) endUnfinished(ctx context.Context, id string) bool {
	ls, err := b.store.ListLeases(ctx, id)
	if err != nil {
		return false
	}
	return len(ls) == 0 || slices.ContainsFunc(ls, func(l leases.Lease) bool { return l.State == leases.LeaseActive })
}

// settleIntents settles this broker's intents created before cutoff (zero:
// all) and ends the sessions whose start they interrupted. At start-up
// every intent of its own is a crash's leftover; later, only old ones are
// (a start in progress holds a fresh one). Other brokers' intents are
// theirs to settle: one of them may be minting right now.
func (b *Broker) settleIntents(ctx context.Context, cutoff time.Time) (map[string]bool, []error) {
	intents, err := b.store.ListIntents(ctx)
	if err != nil {
		return nil, []error{fmt.Errorf("list intents: %w", err)}
	}
	var errs []error
	interrupted := map[string]bool{}
	for _, in := range intents {
		if !cutoff.IsZero() && !in.CreatedAt.Before(cutoff) {
			continue
		}
		if mine, err := b.ownsIntent(ctx, in); err != nil || !mine {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := b.settleIntent(ctx, in); err != nil {
			errs = append(errs, err)
			continue
		}
		if !leases.IsBrokerSession(in.SessionID) {
			interrupted[in.SessionID] = true
		}
	}
	for id := range interrupted {
		unlock := b.lock(id)
		if err := b.endLocked(ctx, id, "start interrupted by a broker crash"); err != nil {
			errs = append(errs, err)
		}
		unlock()
	}
	return interrupted, errs
}

// ownsIntent reports whether in is this broker's to settle: an intent of
// its own pseudo-session, or of a session it owns.
func (b *Broker) ownsIntent(ctx context.Context, in leases.Intent) (bool, error) {
	if b.host == "" {
		return true, nil
	}
	if host, ok := leases.BrokerSessionHost(in.SessionID); ok {
		return host == b.host, nil
	}
	s, err := b.store.GetSession(ctx, in.SessionID)
	if errors.Is(err, leases.ErrNotFound) {
		return true, nil // no owner to leave it to
	}
	if err != nil {
		return false, fmt.Errorf("intent %s: %w", in.ID, err)
	}
	return b.owns(s), nil
}

func (b *Broker) settleIntent(ctx context.Context, in leases.Intent) error {
	p, ok := b.provs.Get(in.Provider)
	if !ok {
		return fmt.Errorf("intent %s: provider %s is not configured; it cannot be settled", in.ID, in.Provider)
	}
	known, err := b.store.ListLeases(ctx, in.SessionID)
	if err != nil {
		return err
	}
	orphans, err := p.FindOrphans(ctx, in.SessionID, known)
	if err != nil {
		return fmt.Errorf("intent %s: %w", in.ID, err)
	}
	if len(orphans) > 0 {
		b.metrics.OrphansFound(p.Name(), len(orphans))
	}
	for _, o := range orphans {
		if err := b.revokeTimed(ctx, p, o); err != nil {
			// Record it so it is retried and visible in status.
			o.State, o.Attempts, o.LastError, o.NextAttempt = leases.LeaseRevokePending, 1, err.Error(), b.now().Add(backoff(1))
			if rerr := b.store.RecordLeases(ctx, "", []leases.Lease{o}); rerr != nil {
				return errors.Join(err, rerr)
			}
			continue
		}
		b.record(Event{Event: EvOrphanRevoke, Session: in.SessionID, Provider: p.Name(), Lease: o.ID, External: o.ExternalID, Reason: "crash recovery"})
		b.log.Warn("revoked a credential minted before a crash", "session", in.SessionID, "lease", o.ID)
	}
	return b.store.DeleteIntent(ctx, in.ID)
}

// reap ends this broker's sessions past their TTL and forgets its own
// broker leases that expired. With the store unreachable it still ends
// (wipes and revokes) the expired sessions it holds in memory.
func (b *Broker) reap(ctx context.Context) {
	now := b.now()
	f := b.own(leases.SessionStarting, leases.SessionActive)
	f.ExpiredBefore = now.Add(time.Nanosecond)
	ss, err := b.store.ListSessions(ctx, f)
	if err != nil {
		b.log.Error("reaper: list sessions; ending the expired sessions this broker holds", "err", err)
		for _, s := range b.cache.sessions(leases.SessionStarting, leases.SessionActive) {
			if s.ExpiresAt.Before(f.ExpiredBefore) {
				ss = append(ss, s)
			}
		}
	}
	for _, s := range ss {
		unlock := b.lock(s.ID)
		if err := b.endLocked(ctx, s.ID, "ttl expired"); err != nil {
			b.log.Warn("reaper: end session", "session", s.ID, "err", err)
		}
		unlock()
	}
	own, err := b.store.ListLeases(ctx, leases.BrokerSession(b.host))
	if err != nil {
		return
	}
	for _, l := range own {
		if !l.ExpiresAt.IsZero() && l.ExpiresAt.Before(now) && l.State == leases.LeaseActive {
			_ = b.store.DeleteLease(ctx, l.ID)
		}
	}
}

// retryPending retries this broker's failed revocations whose backoff has
// passed, and finishes sessions whose last lease went.
func (b *Broker) retryPending(ctx context.Context) {
	ls, err := b.store.FindLeases(ctx, leases.LeaseFilter{State: leases.LeaseRevokePending, HostID: b.host})
	if err != nil {
		b.log.Error("retry: list pending", "err", err)
		return
	}
	touched := map[string]bool{}
	for _, l := range ls {
		if l.NextAttempt.After(b.now()) {
			continue
		}
		_, _ = b.revokeLease(ctx, l, "retry", false) // a failed store write is logged; the lease is retried
		touched[l.SessionID] = true
	}
	for id := range touched {
		if leases.IsBrokerSession(id) {
			continue
		}
		s, err := b.store.GetSession(ctx, id)
		if err == nil && s.State == leases.SessionEnding {
			b.finishSessions(ctx, []leases.Session{s}, s.EndReason)
		}
	}
}

// refresh renews leases of this broker's sessions past about two thirds of
// their life while their session lives, and rewrites the files that
// changed.
func (b *Broker) refresh(ctx context.Context) {
	ss, err := b.store.ListSessions(ctx, b.own(leases.SessionActive))
	if err != nil {
		b.log.Error("refresher: list sessions", "err", err)
		return
	}
	now := b.now()
	for _, s := range ss {
		ls, err := b.store.ListLeases(ctx, s.ID)
		if err != nil {
			continue
		}
		for _, l := range ls {
			if !needsRenewal(l, s, now, b.renewAfter(l.Provider)) {
				continue
			}
			b.renewOne(ctx, s, l)
		}
	}
}

// defaultRenewAfter is the fraction of a lease's life after which it is
// renewed unless the provider says otherwise (providers.RenewPolicy).
const defaultRenewAfter = 2.0 / 3

func (b *Broker) renewAfter(provider string) float64 {
	if p, ok := b.provs.Get(provider); ok {
		if rp, ok := p.(providers.RenewPolicy); ok {
			return rp.RenewAfter()
		}
	}
	return defaultRenewAfter
}

func needsRenewal(l leases.Lease, s leases.Session, now time.Time, after float64) bool {
	if !l.Renewable || l.State != leases.LeaseActive || l.ExpiresAt.IsZero() {
		return false
	}
	// On an active lease NextAttempt is an early-renewal mark
	// (providers.Revocations.RenewEarly: AWS keys denied by a cut-off are
	// re-minted once it has passed).
	if !l.NextAttempt.IsZero() {
		return !now.Before(l.NextAttempt)
	}
	if !l.ExpiresAt.Before(s.ExpiresAt.Add(-time.Second)) {
		return false // already lives as long as the session
	}
	life := l.ExpiresAt.Sub(l.IssuedAt)
	return now.After(l.IssuedAt.Add(time.Duration(float64(life) * after)))
}

// sessionFiles lets a provider read back what it wrote for a session.
type sessionFiles struct {
	w  *agentenv.Writer
	id string
}

func (f sessionFiles) ReadFile(rel string) (secret.Value, error) { return f.w.ReadFile(f.id, rel) }
