package broker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var daemonUID = os.Geteuid()

// RevokeAll declares an incident: the lock is persisted first (no session
// starts from then on, and in fleet mode every broker is told at once),
// this host's session dirs are wiped, each provider makes everything it
// issued invalid in as few calls as its backend allows (for the whole
// fleet: the providers' own records, such as every broker's Vault epochs,
// are in the shared store), and what still fails stays pending for retry.
// Running it again is safe and retries whatever is pending. With the store
// unreachable it revokes what this broker holds and declares the incident
// once the store is back (see revokeAllOffline).
func (b *Broker) RevokeAll(ctx context.Context, c Caller, reason string) (RevokeReport, error) {
	start := b.now()
	if strings.TrimSpace(reason) == "" {
		return RevokeReport{}, fmt.Errorf("%w: a reason is required (--reason \"...\"): it goes into the audit log", ErrBadRequest)
	}
	b.revokingAll.Add(1)
	defer b.revokingAll.Add(-1)
	in := leases.Incident{Reason: reason, DeclaredAt: start, CallerUID: c.UID}
	_, declared, err := b.store.GetIncident(ctx)
	if err == nil && !declared {
		err = b.store.SetIncident(ctx, in)
	}
	if err != nil {
		return b.revokeAllOffline(ctx, c, in, err)
	}
	b.record(Event{Event: EvIncident, Reason: reason, CallerUID: uidPtr(c.UID), CallerPID: c.PID})
	b.log.Warn("incident declared: revoking everything", "reason", reason, "caller_uid", c.UID)
	b.at("after-incident-lock")

	sessions, err := b.store.ListSessions(ctx, leases.SessionFilter{States: liveStates})
	if err != nil {
		return b.revokeAllOffline(ctx, c, in, fmt.Errorf("list sessions: %w", err))
	}
	all, err := b.store.ListLeases(ctx, "")
	if err != nil {
		return b.revokeAllOffline(ctx, c, in, fmt.Errorf("list leases: %w", err))
	}
	var local []string
	others := map[string]string{} // sessions of other brokers of the fleet → their host
	for _, s := range sessions {
		if b.owns(s) {
			local = append(local, s.ID)
		} else {
			others[s.ID] = s.HostID
		}
	}
	rep := RevokeReport{Reason: reason, Incident: true, Sessions: len(sessions), LocalSessions: len(local), Pending: []LeaseInfo{}}
	// The sandboxes lose their files and the servers revoke at the same
	// time: neither waits for the other. Other hosts wipe their own dirs
	// when the notice reaches them.
	var wipe sync.WaitGroup
	wipe.Go(func() { b.wipeDirs(b.localDirs(local)); rep.WipedIn = b.now().Sub(start) })
	byProvider := map[string][]leases.Lease{}
	for _, l := range all {
		byProvider[l.Provider] = append(byProvider[l.Provider], l)
	}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	names := b.provs.Names()
	for name := range byProvider {
		if _, ok := b.provs.Get(name); !ok {
			names = append(names, name) // leases of a provider no longer configured
		}
	}
	for _, name := range names {
		wg.Go(func() {
			r := b.revokeProvider(ctx, name, byProvider[name], others, reason, start)
			mu.Lock()
			rep.Providers = append(rep.Providers, r)
			mu.Unlock()
		})
	}
	wg.Wait()
	left := 0
	var leftHosts []string
	for _, r := range rep.Providers {
		rep.RevokedIn = max(rep.RevokedIn, r.RevokedIn)
		left += r.LeftToHosts
		leftHosts = append(leftHosts, r.LeftHosts...)
	}
	slices.Sort(leftHosts)
	leftHosts = slices.Compact(leftHosts)
	wipe.Wait()
	b.at("revoke-all-before-finish")
	b.finishSessions(ctx, sessions, "incident: "+reason)
	b.log.Info("revoke --all done", "sessions", len(sessions), "local_sessions", len(local), "leases", len(all),
		"servers_ms", rep.RevokedIn.Milliseconds(), "dirs_ms", rep.WipedIn.Milliseconds(), "total_ms", b.now().Sub(start).Milliseconds())
	pending, err := b.store.ListLeasesByState(ctx, leases.LeaseRevokePending)
	if err != nil {
		return rep, fmt.Errorf("list pending: %w", err)
	}
	for _, l := range pending {
		rep.Pending = append(rep.Pending, leaseInfo(l))
	}
	rep.Complete = len(rep.Pending) == 0 && left == 0
	rep.Duration = b.now().Sub(start).Round(time.Millisecond).String()
	if left > 0 {
		return rep, fmt.Errorf("%w: %d leases of other brokers (hosts %s) were not reached by this broker's provider-wide calls "+
			"(their provider config differs from this one's: compare the fingerprints in `credbroker status --all-hosts`); each of those brokers "+
			"revokes its own within %s of the incident; run `credbroker revoke --all` again to check", ErrPending, left, hostList(leftHosts), incidentGrace)
	}
	if !rep.Complete {
		return rep, fmt.Errorf("%w: %d leases are not revoked yet; they are retried with backoff (run `credbroker revoke --all` again to retry now)", ErrPending, len(rep.Pending))
	}
	return rep, nil
}

// revokeProvider makes one provider's credentials invalid: one RevokeAll
// call, which reports the leases it covered; those are forgotten. What it
// did not cover (the call failed, or a lease was minted by another broker
// whose provider config this one's calls do not reach) is revoked lease by
// lease when it is this broker's, and left to its own broker (which
// revokes it within incidentGrace) when it is another's: revoking it here
// with this broker's config could report success without reaching it.
func (b *Broker) revokeProvider(ctx context.Context, name string, ls []leases.Lease, others map[string]string, reason string, start time.Time) ProviderResult {
	r := ProviderResult{Provider: name, Method: "revoke-all"}
	rest := ls
	if p, ok := b.provs.Get(name); ok {
		covered, err := p.RevokeAll(ctx, ls)
		var done []leases.Lease
		done, rest = splitCovered(ls, covered)
		r.RevokedIn = b.now().Sub(start)
		b.at("revoke-all-after-provider")
		b.deleteLeases(ctx, done)
		r.Revoked = len(done)
		if err != nil {
			r.Error = err.Error()
			b.record(Event{Event: EvProviderRevoke, Provider: name, Reason: reason, Error: err.Error()})
			b.log.Error("provider revoke-all failed; falling back to lease by lease", "provider", name, "err", err, "covered", len(done))
		} else {
			b.record(Event{Event: EvProviderRevoke, Provider: name, Reason: reason})
		}
	}
	var mine []leases.Lease
	for _, l := range rest {
		host, broker := leases.BrokerSessionHost(l.SessionID)
		other, ok := others[l.SessionID]
		if ok || (broker && b.host != "" && host != b.host) {
			if !ok {
				other = host
			}
			r.LeftToHosts++
			if !slices.Contains(r.LeftHosts, other) {
				r.LeftHosts = append(r.LeftHosts, other)
			}
			continue
		}
		mine = append(mine, l)
	}
	if len(mine) > 0 {
		r.Method = "per-lease"
		if r.Revoked > 0 {
			r.Method = "revoke-all+per-lease"
		}
		pending, _ := b.revokeLeases(ctx, mine, reason, false) // failed store writes are logged
		r.Revoked += len(mine) - pending
		r.Pending = pending
		r.RevokedIn = b.now().Sub(start)
	}
	slices.Sort(r.LeftHosts)
	return r
}

// hostList names hosts for a message ("" shows as a single broker's).
func hostList(hosts []string) string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h
		if h == "" {
			names[i] = `""`
		}
	}
	return strings.Join(names, ", ")
}

// splitCovered splits ls into the leases whose ids are in covered and the
// rest.
func splitCovered(ls []leases.Lease, covered []string) (done, rest []leases.Lease) {
	in := make(map[string]bool, len(covered))
	for _, id := range covered {
		in[id] = true
	}
	for _, l := range ls {
		if in[l.ID] {
			done = append(done, l)
		} else {
			rest = append(rest, l)
		}
	}
	return done, rest
}

// wipeDirs marks every session dir of ids revoked and removes it, a few at
// a time, each under its session lock (a start still writing its dir
// finishes first, so its dir is wiped too).
func (b *Broker) wipeDirs(ids []string) {
	work := make(chan string)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for id := range work {
				unlock := b.lock(id)
				b.closeEgress(id) // the network first, then the files
				_ = b.env.MarkRevoked(id)
				if err := b.env.Remove(id); err != nil {
					b.log.Error("remove session dir", "session", id, "err", err)
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

// deleteLeases forgets leases a provider revoked wholesale, in one
// transaction when the store can.
func (b *Broker) deleteLeases(ctx context.Context, ls []leases.Lease) {
	for _, l := range ls {
		b.cache.dropLease(l.SessionID, l.ID)
	}
	if bs, ok := b.store.(leases.Batcher); ok {
		ids := make([]string, len(ls))
		for i, l := range ls {
			ids[i] = l.ID
		}
		if err := bs.DeleteLeases(ctx, ids); err != nil {
			b.log.Error("delete revoked leases", "count", len(ids), "err", err)
		}
		return
	}
	for _, l := range ls {
		if err := b.store.DeleteLease(ctx, l.ID); err != nil {
			b.log.Error("delete revoked lease", "lease", l.ID, "err", err)
		}
	}
}

// finishSessions marks sessions without leases left as ended (in one
// transaction when the store can).
func (b *Broker) finishSessions(ctx context.Context, ss []leases.Session, reason string) {
	if bs, ok := b.store.(leases.Batcher); ok && len(ss) > 1 {
		ids := make([]string, len(ss))
		roles := make(map[string]string, len(ss))
		for i, s := range ss {
			ids[i], roles[s.ID] = s.ID, s.Role
		}
		ended, err := bs.FinishSessions(ctx, ids, reason, b.now())
		if err != nil {
			b.log.Error("finish sessions", "count", len(ids), "err", err)
			return
		}
		for _, id := range ended {
			b.record(Event{Event: EvSessionEnd, Session: id, Role: roles[id], Reason: reason})
			b.locks.Delete(id)
			b.cache.drop(id)
		}
		return
	}
	for _, s := range ss {
		unlock := b.lock(s.ID)
		ls, err := b.store.ListLeases(ctx, s.ID)
		cur, gerr := b.store.GetSession(ctx, s.ID)
		if err == nil && gerr == nil && cur.State != leases.SessionEnded {
			if cur.EndReason == "" {
				cur.EndReason, cur.EndedAt = reason, b.now()
			}
			cur.State = leases.SessionEnding
			if len(ls) == 0 {
				cur.State = leases.SessionEnded
			}
			if uerr := b.store.UpdateSession(ctx, cur); uerr != nil {
				b.log.Error("update session", "session", s.ID, "err", uerr)
			} else if cur.State == leases.SessionEnded {
				b.record(Event{Event: EvSessionEnd, Session: s.ID, Role: s.Role, Reason: reason})
				b.cache.drop(s.ID)
			}
		}
		unlock()
	}
}

// ClearIncident lifts the incident lock. Only an admin may: declaring an
// incident is a safety action any admitted caller may take, lifting it
// lets sessions start again.
func (b *Broker) ClearIncident(ctx context.Context, c Caller) error {
	if !b.isAdmin(c.UID) {
		err := fmt.Errorf("%w: uid %d may not clear the incident: only an admin may (%s); ask one, or add the uid to broker.admin_uids",
			ErrForbidden, c.UID, b.adminsText())
		return b.refuse(Event{Event: EvAccessRefused}, c, err)
	}
	_, ok, err := b.store.GetIncident(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: no incident is declared", ErrBadRequest)
	}
	if err := b.store.ClearIncident(ctx); err != nil {
		return fmt.Errorf("clear incident: %w", err)
	}
	b.record(Event{Event: EvIncidentClear, CallerUID: uidPtr(c.UID), CallerPID: c.PID})
	b.log.Warn("incident cleared", "caller_uid", c.UID)
	return nil
}

// Status reports this broker's live sessions and pending revocations, and
// the incident lock.
func (b *Broker) Status(ctx context.Context) (Status, error) { return b.StatusWith(ctx, false) }

// StatusWith is Status, with allHosts for every broker sharing the store.
func (b *Broker) StatusWith(ctx context.Context, allHosts bool) (Status, error) {
	st := Status{Host: b.host, Providers: b.provs.Names(), Fingerprints: b.Fingerprints(), Sessions: []SessionInfo{}, Pending: []LeaseInfo{}}
	if in, ok, err := b.store.GetIncident(ctx); err != nil {
		return st, err
	} else if ok {
		st.Incident = &IncidentInfo{Reason: in.Reason, DeclaredAt: in.DeclaredAt, CallerUID: in.CallerUID}
	}
	ss, err := b.ListSessionsWith(ctx, SessionQuery{AllHosts: allHosts})
	if err != nil {
		return st, err
	}
	st.Sessions = ss
	f := leases.LeaseFilter{State: leases.LeaseRevokePending, HostID: b.host}
	if allHosts {
		f.HostID = ""
	}
	pending, err := b.store.FindLeases(ctx, f)
	if err != nil {
		return st, err
	}
	for _, l := range pending {
		st.Pending = append(st.Pending, leaseInfo(l))
	}
	if allHosts {
		if st.Hosts, err = b.hostInfos(ctx); err != nil {
			return st, err
		}
	}
	return st, nil
}

// SessionQuery selects sessions for ListSessions.
type SessionQuery struct {
	// All includes ended sessions.
	All bool
	// AllHosts includes the sessions of every broker sharing the store.
	AllHosts bool
}

// liveStates are the states of a session that may hold credentials.
var liveStates = []leases.SessionState{leases.SessionStarting, leases.SessionActive, leases.SessionEnding}

// ListSessions lists this broker's live (starting, active or ending) sessions, or all
// with all.
func (b *Broker) ListSessions(ctx context.Context, all bool) ([]SessionInfo, error) {
	return b.ListSessionsWith(ctx, SessionQuery{All: all})
}

// ListSessionsWith lists sessions as q selects: live ones, or all with
// q.All, of this broker or, with q.AllHosts, of the fleet.
func (b *Broker) ListSessionsWith(ctx context.Context, q SessionQuery) ([]SessionInfo, error) {
	f := leases.SessionFilter{States: liveStates}
	if q.All {
		f = leases.SessionFilter{}
	}
	lf := leases.LeaseFilter{}
	if !q.AllHosts {
		f.HostID, lf.HostID = b.host, b.host
	}
	ss, err := b.store.ListSessions(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	// One query for every lease rather than one per session.
	ls, err := b.store.FindLeases(ctx, lf)
	if err != nil {
		return nil, fmt.Errorf("list leases: %w", err)
	}
	bySession := map[string][]leases.Lease{}
	for _, l := range ls {
		bySession[l.SessionID] = append(bySession[l.SessionID], l)
	}
	out := make([]SessionInfo, 0, len(ss))
	for _, s := range ss {
		si := sessionInfo(s, bySession[s.ID])
		b.egressInto(&si)
		out = append(out, si)
	}
	return out, nil
}

// GetSession returns one session with its leases.
func (b *Broker) GetSession(ctx context.Context, id string) (SessionInfo, error) {
	s, err := b.store.GetSession(ctx, id)
	if errors.Is(err, leases.ErrNotFound) {
		return SessionInfo{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return SessionInfo{}, err
	}
	ls, err := b.store.ListLeases(ctx, id)
	if err != nil {
		return SessionInfo{}, err
	}
	si := sessionInfo(s, ls)
	b.egressInto(&si)
	return si, nil
}
