package broker

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// WatchIncidents handles, until ctx ends, every incident the store reports
// (leases.IncidentWatcher; a store without it reports none): this host's
// dirs are wiped and this broker's sessions ended as soon as a broker
// anywhere declares one, or as soon as this one is back after being cut
// off. Serve runs it.
func (b *Broker) WatchIncidents(ctx context.Context) {
	iw, ok := b.store.(leases.IncidentWatcher)
	if !ok {
		return
	}
	var wg sync.WaitGroup
	wg.Go(func() { b.incidentWorker(ctx) })
	_ = iw.WatchIncident(ctx, b.noticeIncident, func(err error) {
		b.log.Warn("incident watch interrupted; reconnecting", "err", err)
	})
	wg.Wait()
}

// noticeIncident is the leases.IncidentWatcher callback: it keeps the
// incident and wakes the incident worker, without waiting.
func (b *Broker) noticeIncident(in leases.Incident) {
	b.lastNotice.Store(&in)
	select {
	case b.notices <- struct{}{}:
	default: // a wake-up is pending already
	}
}

// incidentWorker handles incident notices until ctx ends. It works from
// the notice itself, not from a new read of the store: after a partition
// the pool's connections may be dead for a while, and the dirs must go
// before the store answers again.
func (b *Broker) incidentWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.notices:
			if in := b.lastNotice.Load(); in != nil && b.revokingAll.Load() == 0 {
				b.revokeLocal(ctx, *in)
			}
		}
	}
}

// CheckIncident reads the lock and, when an incident is declared, handles
// it on this host. The daemon runs it before serving and the loop on each
// tick, so a broker that was down, or missed a notice, still does.
func (b *Broker) CheckIncident(ctx context.Context) {
	if b.revokingAll.Load() > 0 {
		return // RevokeAll on this broker handles this host itself
	}
	in, ok, err := b.store.GetIncident(ctx)
	if err != nil {
		b.log.Warn("read the incident lock", "err", err)
		return
	}
	if ok {
		b.revokeLocal(ctx, in)
	}
}

// incidentGrace is how long after an incident is declared a broker leaves
// its sessions' leases to the provider-wide revocation (run once, by the
// broker where revoke --all was called, for the whole fleet) before it
// revokes, lease by lease, whatever that left. Revoking them all at once
// on every host would only load the servers with calls that the one
// provider-wide call makes useless.
const incidentGrace = 15 * time.Second

// revokeLocal is an incident's work on this host. Every session dir here
// is wiped first, from a listing of the disk (no store needed, and dirs the
// store no longer lists as live go too). Then this broker's active
// sessions are marked as ending; a single broker also revokes its own
// credentials still recorded (Vault epochs). Once the incident is older than
// incidentGrace (at once for a broker that was down or cut off longer),
// leases of its sessions that are still active are revoked here. It is
// idempotent and cheap once done; the loop runs it on every tick during an
// incident.
func (b *Broker) revokeLocal(ctx context.Context, in leases.Incident) {
	reason := "incident: " + in.Reason
	start := b.now()
	if dirs := b.localDirs(nil); len(dirs) > 0 {
		b.wipeDirs(dirs)
		b.log.Warn("incident: session dirs on this host wiped", "reason", in.Reason, "dirs", len(dirs),
			"wiped_ms", b.now().Sub(start).Milliseconds(), "declared", in.DeclaredAt)
	}
	ss, err := b.store.ListSessions(ctx, b.own(leases.SessionStarting, leases.SessionActive))
	if err != nil {
		// Without the store nobody's progress can be seen: revoke what
		// this broker holds, now.
		b.log.Warn("incident: list this broker's sessions; revoking those it holds", "err", err)
		b.endSessions(ctx, sessionIDs(b.cache.sessions(leases.SessionStarting, leases.SessionActive)), reason)
		return
	}
	if len(ss) > 0 {
		b.finishSessions(ctx, ss, reason)
	}
	ls, err := b.store.FindLeases(ctx, leases.LeaseFilter{State: leases.LeaseActive, HostID: b.host})
	if err != nil {
		b.log.Warn("incident: list this broker's leases", "err", err)
		return
	}
	var (
		left []string
		own  []leases.Lease // this broker's own credentials (Vault epochs)
	)
	for _, l := range ls {
		if !leases.IsBrokerSession(l.SessionID) {
			left = append(left, l.SessionID)
		} else if host, ok := leases.BrokerSessionHost(l.SessionID); ok && host == b.host {
			own = append(own, l)
		}
	}
	graceOver := b.now().Sub(in.DeclaredAt) >= incidentGrace
	if len(own) > 0 && (b.host == "" || graceOver) {
		// Normally revoked by the provider-wide call; still recorded when
		// the broker that made it died before forgetting them (or one was
		// created in the incident's first moments). A single broker is
		// that broker: no call of its own is in flight, so it does not
		// wait. Revoking an already revoked one only forgets it.
		b.log.Warn("incident: this broker's own credentials are still recorded; revoking them", "leases", len(own))
		if _, err := b.revokeLeases(ctx, own, reason, false); err != nil {
			b.log.Warn("incident: record the revocation of this broker's own credentials", "err", err)
		}
	}
	if !graceOver {
		return
	}
	slices.Sort(left)
	if left = slices.Compact(left); len(left) == 0 {
		return
	}
	b.log.Warn("incident: sessions of this broker still hold active leases; revoking them lease by lease",
		"reason", in.Reason, "sessions", len(left), "declared", in.DeclaredAt)
	b.endSessions(ctx, left, reason)
}

// endSessions ends each session of ids that is not ended yet, four at a
// time.
func (b *Broker) endSessions(ctx context.Context, ids []string, reason string) {
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range work {
				unlock := b.lock(id)
				cur, err := b.store.GetSession(ctx, id)
				if err != nil || cur.State != leases.SessionEnded {
					if err := b.endLocked(ctx, id, reason); err != nil {
						b.log.Warn("incident: end session", "session", id, "err", err)
					}
				}
				unlock()
			}
		})
	}
	for _, id := range ids {
		work <- id
	}
	close(work)
	wg.Wait()
}

func sessionIDs(ss []leases.Session) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = s.ID
	}
	return out
}

// checkNoIncident fails when an incident is declared (in the store, or by
// this broker while the store was unreachable) or when the lock cannot be
// read: then no session starts (fail closed).
func (b *Broker) checkNoIncident(ctx context.Context, when string) error {
	in, ok := b.backlog.hasIncident()
	if !ok {
		var err error
		if in, ok, err = b.store.GetIncident(ctx); err != nil {
			return fmt.Errorf("%w: cannot read the incident lock %s, so no session starts (credbroker fails closed; nothing is left minted): %v",
				ErrStoreUnavailable, when, err)
		}
	}
	if ok {
		return fmt.Errorf("%w at %s (%s): no session starts until `credbroker incident clear`",
			ErrIncident, in.DeclaredAt.Format(time.RFC3339), in.Reason)
	}
	return nil
}
