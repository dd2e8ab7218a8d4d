package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/credbroker/credbroker/leases"
)

// ErrStoreUnavailable means the lease store could not be read or written.
// Minting fails closed on it: nothing is minted that the store does not
// know. Revocation does not wait for it (see sessionCache and backlog).
var ErrStoreUnavailable = errors.New("lease store unavailable")

// sessionCache is what this broker knows of its own live sessions and
// their leases, in memory, so that it can still wipe and revoke them while
// the lease store is unreachable. It is a copy, never the truth: an entry
// that is stale only costs a revocation that was already done (revocation
// is idempotent), and a missing one waits for the store to come back.
type sessionCache struct {
	mu sync.Mutex
	m  map[string]*cachedSession
}

type cachedSession struct {
	s      leases.Session
	leases map[string]leases.Lease
}

func (c *sessionCache) putSession(s leases.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*cachedSession{}
	}
	if cs, ok := c.m[s.ID]; ok {
		cs.s = s
		return
	}
	c.m[s.ID] = &cachedSession{s: s, leases: map[string]leases.Lease{}}
}

// update replaces a cached session, if it is cached (sessions of other
// hosts never are).
func (c *sessionCache) update(s leases.Session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.m[s.ID]; ok {
		cs.s = s
	}
}

// retain drops the cached sessions created before cutoff that are not in
// keep: ended meanwhile, possibly by another broker. Younger ones stay, as
// the store's answer may predate them.
func (c *sessionCache) retain(keep map[string]bool, cutoff time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, cs := range c.m {
		if !keep[id] && cs.s.CreatedAt.Before(cutoff) {
			delete(c.m, id)
		}
	}
}

// putLeases adds or replaces leases of a cached session.
func (c *sessionCache) putLeases(sessionID string, ls []leases.Lease) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, ok := c.m[sessionID]
	if !ok {
		return
	}
	for _, l := range ls {
		cs.leases[l.ID] = l
	}
}

func (c *sessionCache) dropLease(sessionID, leaseID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs, ok := c.m[sessionID]; ok {
		delete(cs.leases, leaseID)
	}
}

func (c *sessionCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

func (c *sessionCache) get(id string) (leases.Session, []leases.Lease, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cs, ok := c.m[id]
	if !ok {
		return leases.Session{}, nil, false
	}
	return cs.s, slices.Collect(maps.Values(cs.leases)), true
}

// sessions lists the cached sessions in one of states (any state when
// none is given).
func (c *sessionCache) sessions(states ...leases.SessionState) []leases.Session {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []leases.Session
	for _, cs := range c.m {
		if len(states) == 0 || slices.Contains(states, cs.s.State) {
			out = append(out, cs.s)
		}
	}
	slices.SortFunc(out, func(a, b leases.Session) int { return a.CreatedAt.Compare(b.CreatedAt) })
	return out
}

// leasesOf returns the cached leases of provider, of every cached session.
func (c *sessionCache) leasesOf(provider string) []leases.Lease {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []leases.Lease
	for _, cs := range c.m {
		for _, l := range cs.leases {
			if l.Provider == provider {
				out = append(out, l)
			}
		}
	}
	return out
}

// backlog holds what this broker did while the lease store was
// unreachable and must record once it is back: sessions it ended (their
// leases revoked at the providers, the store not told) and an incident it
// declared. It lives in memory: if the broker dies first, the reconciler
// still ends those sessions at start-up (their dirs are gone) and revokes
// their leases again, which is harmless.
type backlog struct {
	mu       sync.Mutex
	ends     map[string]pendingEnd
	incident *pendingIncident
}

type pendingEnd struct {
	reason string
	at     time.Time
}

type pendingIncident struct {
	in     leases.Incident
	caller Caller
}

// addEnd remembers that session id was ended (first reason and time win).
func (q *backlog) addEnd(id, reason string, at time.Time) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.ends == nil {
		q.ends = map[string]pendingEnd{}
	}
	if _, ok := q.ends[id]; !ok {
		q.ends[id] = pendingEnd{reason: reason, at: at}
	}
}

func (q *backlog) setIncident(in leases.Incident, c Caller) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.incident == nil {
		q.incident = &pendingIncident{in: in, caller: c}
	}
}

// hasIncident reports an incident declared while the store was away: no
// session may start until it is recorded.
func (q *backlog) hasIncident() (leases.Incident, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.incident == nil {
		return leases.Incident{}, false
	}
	return q.incident.in, true
}

func (q *backlog) empty() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ends) == 0 && q.incident == nil
}

// take empties the backlog and returns what it held.
func (q *backlog) take() (map[string]pendingEnd, *pendingIncident) {
	q.mu.Lock()
	defer q.mu.Unlock()
	ends, in := q.ends, q.incident
	q.ends, q.incident = nil, nil
	return ends, in
}

// flushBacklog records what was done while the store was unreachable: the
// incident first (declared, broadcast, and revoke --all run again for the
// fleet), then each session ended offline (its end is run again: the dir is
// gone already, every lease still recorded is revoked again and deleted,
// the session is marked ended). Whatever still fails goes back into the
// backlog.
func (b *Broker) flushBacklog(ctx context.Context) {
	if b.backlog.empty() {
		return
	}
	ends, inc := b.backlog.take()
	if inc != nil {
		if err := b.store.SetIncident(ctx, inc.in); err != nil {
			b.backlog.setIncident(inc.in, inc.caller)
			for id, e := range ends {
				b.backlog.addEnd(id, e.reason, e.at)
			}
			return
		}
		b.log.Warn("lease store is back: the incident declared while it was away is recorded and broadcast; running revoke --all again",
			"reason", inc.in.Reason)
		if _, err := b.RevokeAll(ctx, inc.caller, inc.in.Reason); err != nil {
			b.log.Error("revoke --all after the lease store came back", "err", err)
		}
	}
	for id, e := range ends {
		unlock := b.lock(id)
		err := b.endAt(ctx, id, e.reason, e.at)
		unlock()
		switch {
		case err == nil:
			b.log.Info("lease store is back: recorded the end of a session ended while it was away", "session", id)
		case errors.Is(err, leases.ErrNotFound):
			b.log.Warn("a session ended while the lease store was away is not in the store", "session", id)
		case errors.Is(err, ErrPending) && !errors.Is(err, ErrStoreUnavailable):
			// Recorded; what is pending is retried by the loop.
		default:
			b.log.Warn("recording a session ended while the lease store was away; retrying", "session", id, "err", err)
		}
	}
}

// loadCache fills the session cache with this broker's live sessions and
// their leases, at start-up.
func (b *Broker) loadCache(ctx context.Context) {
	ss, err := b.store.ListSessions(ctx, b.own(leases.SessionStarting, leases.SessionActive, leases.SessionEnding))
	if err != nil {
		b.log.Warn("load this broker's sessions into memory", "err", err)
		return
	}
	ls, err := b.store.FindLeases(ctx, leases.LeaseFilter{HostID: b.host})
	if err != nil {
		b.log.Warn("load this broker's leases into memory", "err", err)
		return
	}
	for _, s := range ss {
		b.cache.putSession(s)
	}
	bySession := map[string][]leases.Lease{}
	for _, l := range ls {
		bySession[l.SessionID] = append(bySession[l.SessionID], l)
	}
	for id, ls := range bySession {
		b.cache.putLeases(id, ls)
	}
}

// revokeAllOffline is RevokeAll when the store cannot be read or written:
// revocation does not wait for it. This broker wipes every session dir on
// its host and asks each provider to revoke everything (the Vault provider
// revokes the epoch it holds, under which are this broker's session
// tokens), falling back to the leases it holds in memory. The incident is
// kept in the backlog: once the store is back it is declared (and so
// broadcast) and RevokeAll runs again for the whole fleet. Until then no
// session starts here.
func (b *Broker) revokeAllOffline(ctx context.Context, c Caller, in leases.Incident, cause error) (RevokeReport, error) {
	start := b.now()
	reason := in.Reason
	b.backlog.setIncident(in, c)
	b.record(Event{Event: EvIncident, Reason: reason, CallerUID: uidPtr(c.UID), CallerPID: c.PID,
		Error: "lease store unavailable; recorded and broadcast when it is back: " + cause.Error()})
	b.log.Error("incident declared while the lease store is unavailable: revoking what this broker holds",
		"reason", reason, "caller_uid", c.UID, "err", cause)
	own := b.cache.sessions()
	rep := RevokeReport{Reason: reason, Incident: true, Sessions: len(own), LocalSessions: len(own), Pending: []LeaseInfo{}}
	var wipe sync.WaitGroup
	wipe.Go(func() { b.wipeDirs(b.localDirs(sessionIDs(own))); rep.WipedIn = b.now().Sub(start) })
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, name := range b.provs.Names() {
		p, _ := b.provs.Get(name)
		wg.Go(func() {
			r := ProviderResult{Provider: name, Method: "revoke-all"}
			ls := b.cache.leasesOf(name)
			covered, err := p.RevokeAll(ctx, ls)
			done, rest := splitCovered(ls, covered)
			r.Revoked = len(done)
			if err != nil {
				r.Method, r.Error = "per-lease", err.Error()
			}
			if len(rest) > 0 {
				pending, _ := b.revokeLeases(ctx, rest, reason, true)
				r.Method, r.Revoked, r.Pending = "per-lease", r.Revoked+len(rest)-pending, pending
			}
			r.RevokedIn = b.now().Sub(start)
			mu.Lock()
			rep.Providers = append(rep.Providers, r)
			rep.RevokedIn = max(rep.RevokedIn, r.RevokedIn)
			mu.Unlock()
		})
	}
	wg.Wait()
	wipe.Wait()
	rep.Duration = b.now().Sub(start).Round(time.Millisecond).String()
	return rep, fmt.Errorf("%w: %w (%v): this broker wiped its session dirs and revoked what it holds at the providers, "+
		"but the incident lock is not recorded and the other brokers are not told yet; it is declared, and revoke --all runs again "+
		"for the whole fleet, as soon as the store is back (no session starts here until then)", ErrPending, ErrStoreUnavailable, cause)
}

// localDirs is ids and every session dir on this host's disk, sorted,
// without duplicates: a dir the store no longer lists as live still goes.
func (b *Broker) localDirs(ids []string) []string {
	out := slices.Clone(ids)
	onDisk, err := b.env.List()
	if err != nil {
		b.log.Error("list session dirs", "err", err)
	}
	out = append(out, onDisk...)
	for _, s := range b.cache.sessions() {
		out = append(out, s.ID)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
