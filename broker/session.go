package broker

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// StartSession mints every provider the role names, all or nothing, records
// the leases, then writes the session dir. Anything minted is revoked when
// any later step fails.
func (b *Broker) StartSession(ctx context.Context, c Caller, req StartRequest) (SessionInfo, error) {
	// One config for the whole start: a reload (SIGHUP) meanwhile applies
	// to the next session, not to half of this one.
	cfg := b.config()
	role, ttl, uid, err := b.checkStart(ctx, cfg, c, req)
	if err != nil {
		b.record(Event{Event: EvSessionRefused, Role: req.Role, CallerUID: uidPtr(c.UID), CallerPID: c.PID, Reason: err.Error()})
		b.observeStart(req.Role, StartRefused, err)
		return SessionInfo{}, err
	}
	now := b.now()
	s := leases.Session{
		ID: newSessionID(), Role: role.Name, UID: uid, CallerUID: c.UID,
		CreatedAt: now, ExpiresAt: now.Add(ttl), State: leases.SessionStarting, HostID: b.host,
	}
	s.Dir = b.env.Dir(s.ID)
	unlock := b.lock(s.ID)
	defer unlock()
	prep := b.prepareProxy(s, role)
	defer prep.discard()
	// The first write, the session with every intent: nothing is minted
	// that the store cannot record.
	ins := b.startIntents(s, role)
	created, err := b.beginStart(ctx, s, ins)
	if !created {
		b.record(Event{Event: EvSessionRefused, Role: req.Role, CallerUID: uidPtr(c.UID), CallerPID: c.PID, Reason: err.Error()})
		b.observeStart(req.Role, StartRefused, err)
		return SessionInfo{}, err
	}
	b.cache.putSession(s)
	log := b.log.With("session", s.ID, "role", role.Name)

	b.at("after-intent")
	var grants []providers.Grant
	if err == nil {
		grants, err = b.mintAll(ctx, s, role, ins)
	}
	if err == nil {
		// An incident declared while we minted wins: revoke-all may have run
		// before our leases were recorded.
		err = b.checkNoIncident(ctx, "after minting")
	}
	var pFiles, pEnv map[string]secret.Value
	if err == nil {
		pFiles, pEnv, err = b.openProxy(s, role, prep, intentProviders(ins), grants)
	}
	if err == nil {
		b.at("before-write-dir")
		err = b.writeDir(s, grants, pFiles, pEnv)
		b.at("after-write-dir")
	}
	if err == nil {
		err = b.openEgress(cfg, s)
	}
	if err == nil {
		// Nothing is handed out that the audit log does not hold.
		ev := Event{Event: EvSessionStart, Session: s.ID, Role: role.Name, CallerUID: uidPtr(c.UID), CallerPID: c.PID, Expires: s.ExpiresAt}
		if aerr := b.audit.Record(ev); aerr != nil {
			b.log.Error("AUDIT LOG WRITE FAILED", "event", ev.Event, "session", ev.Session, "err", aerr)
			err = fmt.Errorf("%w: %v; credbroker hands out nothing it cannot audit, so what was minted is revoked (free space or fix the permissions of %s)",
				ErrAuditUnavailable, aerr, b.built.Broker.AuditLog)
		}
	}
	if err == nil {
		// Active only now that its dir holds its credentials, and only if
		// nothing ended it meanwhile (revoke --all does not wait for us).
		b.at("before-activate")
		if aerr := b.store.ActivateSession(ctx, s.ID); aerr != nil {
			err = fmt.Errorf("%w: mark the session active: %v", ErrStoreUnavailable, aerr)
			if errors.Is(aerr, leases.ErrStateChanged) {
				// Ended elsewhere (a fleet peer's revoke --all): the end
				// below may find nothing left to do, but the dir must go.
				err = fmt.Errorf("%w: the session was ended while it started (%v)", ErrIncident, aerr)
				_ = b.env.MarkRevoked(s.ID)
				if rerr := b.env.Remove(s.ID); rerr != nil {
					log.Error("remove session dir", "err", rerr)
				}
			}
		} else {
			s.State = leases.SessionActive
			b.cache.update(s)
		}
	}
	if err != nil {
		// Revoke with a context that outlives a cancelled request.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		if endErr := b.endLocked(cctx, s.ID, "start failed: "+err.Error()); endErr != nil {
			log.Error("clean up after failed start", "err", endErr)
			err = fmt.Errorf("%w (cleanup: %v)", err, endErr)
		}
		b.record(Event{Event: EvSessionFailed, Session: s.ID, Role: role.Name, CallerUID: uidPtr(c.UID), CallerPID: c.PID, Error: err.Error()})
		b.observeStart(role.Name, StartFailed, err)
		return SessionInfo{}, err
	}
	b.observeStart(role.Name, StartOK, nil)
	log.Info("session started", "expires", s.ExpiresAt, "dir", s.Dir)
	var ls []leases.Lease // as recorded: no need to read them back
	for _, g := range grants {
		ls = append(ls, g.Leases...)
	}
	sort.SliceStable(ls, func(i, j int) bool { // the store's order
		if !ls[i].IssuedAt.Equal(ls[j].IssuedAt) {
			return ls[i].IssuedAt.Before(ls[j].IssuedAt)
		}
		return ls[i].ID < ls[j].ID
	})
	info := sessionInfo(s, ls)
	b.egressInto(&info)
	return info, nil
}

// checkStart validates a request against cfg: role, ttl, uid, incident
// lock.
func (b *Broker) checkStart(ctx context.Context, cfg *configs.Config, c Caller, req StartRequest) (configs.Role, time.Duration, int, error) {
	role, ok := cfg.Roles[req.Role]
	if !ok {
		names := slices.Sorted(maps.Keys(cfg.Roles))
		return role, 0, 0, fmt.Errorf("%w %q: known roles are %s (see the roles section of %s)",
			ErrUnknownRole, req.Role, strings.Join(names, ", "), cfg.Path)
	}
	if err := b.mayStart(cfg, c, role); err != nil {
		return role, 0, 0, err
	}
	ttl := role.TTL.D()
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil {
			return role, 0, 0, fmt.Errorf("%w: --ttl %q is not a duration; use a value like 20m or 1h", ErrBadRequest, req.TTL)
		}
		ttl = d
	}
	if ttl < configs.MinSessionTTL {
		return role, 0, 0, fmt.Errorf("%w: --ttl %s is below the minimum %s", ErrBadRequest, ttl, configs.MinSessionTTL)
	}
	if ttl > role.MaxTTL.D() {
		return role, 0, 0, fmt.Errorf("%w: --ttl %s is above role %s's max_ttl %s; ask for less or raise max_ttl in the config",
			ErrBadRequest, ttl, role.Name, role.MaxTTL.D())
	}
	uid := c.UID
	if req.UID != nil {
		uid = *req.UID
		if uid != c.UID && c.UID != 0 {
			return role, 0, 0, fmt.Errorf("%w: only root may start a session owned by another uid (asked for %d, caller is %d)", ErrForbidden, uid, c.UID)
		}
		if uid < 0 {
			return role, 0, 0, fmt.Errorf("%w: --uid %d is negative", ErrBadRequest, uid)
		}
	}
	for _, p := range role.ProviderNames() {
		if _, ok := b.provs.Get(p); !ok {
			return role, 0, 0, fmt.Errorf("%w: role %s needs provider %s, which is not configured (add providers.%s to the config)", ErrBadRequest, role.Name, p, p)
		}
	}
	if role.UsesProxy() && (b.openProxyFn == nil || b.egress == nil) {
		return role, 0, 0, fmt.Errorf("%w: role %s delivers by proxy, and this broker runs no egress gateway with proxy delivery (run credbroker-daemon, which `credbroker serve` starts)", ErrBadRequest, role.Name)
	}
	if err := b.checkNoIncident(ctx, "before minting"); err != nil {
		return role, 0, 0, err
	}
	return role, ttl, uid, nil
}

// writeDir merges the grants and writes the session dir on tmpfs.
// extraFiles and extraEnv (proxy delivery's CA and variables) win.
func (b *Broker) writeDir(s leases.Session, grants []providers.Grant, extraFiles, extraEnv map[string]secret.Value) error {
	files := map[string]secret.Value{}
	env := map[string]secret.Value{}
	for _, g := range grants {
		maps.Copy(files, g.Files)
		maps.Copy(env, g.Env)
	}
	mergeInto(files, extraFiles)
	mergeInto(env, extraEnv)
	_, err := b.env.Create(agentenv.Meta{ID: s.ID, Role: s.Role, CreatedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt, UID: s.UID}, files, env)
	if err != nil {
		return fmt.Errorf("write session dir: %w", err)
	}
	return nil
}

// EndSession ends a session: wipes its dir, then revokes every lease. It
// returns ErrPending (wrapped) when some revocations failed; they stay in
// the store and are retried. With the store unreachable it still wipes and
// revokes what this broker knows of the session (ErrPending and
// ErrStoreUnavailable, wrapped): the end is recorded once the store is back.
func (b *Broker) EndSession(ctx context.Context, c Caller, id, reason string) (SessionInfo, error) {
	if err := agentenv.ValidID(id); err != nil {
		return SessionInfo{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	unlock := b.lock(id)
	defer unlock()
	s, readErr := b.store.GetSession(ctx, id)
	if errors.Is(readErr, leases.ErrNotFound) {
		return SessionInfo{}, fmt.Errorf("%w: %s (see `credbroker session list`)", ErrNotFound, id)
	}
	if readErr != nil {
		cs, _, ok := b.cache.get(id)
		if !ok {
			return SessionInfo{}, fmt.Errorf("%w: read session %s (and this broker does not hold it): %v", ErrStoreUnavailable, id, readErr)
		}
		s = cs
	}
	if err := b.mayEnd(c, s); err != nil {
		return SessionInfo{}, err
	}
	if reason == "" {
		reason = fmt.Sprintf("ended by uid %d", c.UID)
	}
	if s.State == leases.SessionEnded {
		return sessionInfo(s, nil), nil // already over: nothing to do, nothing to audit
	}
	err := b.endFrom(ctx, s, readErr, reason, b.now())
	if errors.Is(err, ErrStoreUnavailable) {
		s, ls, _ := b.cache.get(id)
		return sessionInfo(s, ls), err
	}
	s, _ = b.store.GetSession(ctx, id)
	ls, _ := b.store.ListLeases(ctx, id)
	return sessionInfo(s, ls), err
}

// mayEnd: admins (root, the daemon's uid, broker.admin_uids), the
// session's caller and its owner may end (or hold) a session; a refusal is
// audited.
func (b *Broker) mayEnd(c Caller, s leases.Session) error {
	if b.isAdmin(c.UID) || c.UID == s.CallerUID || c.UID == s.UID {
		return nil
	}
	err := fmt.Errorf("%w: session %s belongs to uid %d; only its owner or an admin (%s) may end or hold it",
		ErrForbidden, s.ID, s.CallerUID, b.adminsText())
	return b.refuse(Event{Event: EvAccessRefused, Session: s.ID, Role: s.Role}, c, err)
}

// CheckHold checks that c may hold session id (see Server.holdSession):
// it exists, is active, and c started it or owns it.
func (b *Broker) CheckHold(ctx context.Context, c Caller, id string) error {
	if err := agentenv.ValidID(id); err != nil {
		return fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	s, err := b.store.GetSession(ctx, id)
	if errors.Is(err, leases.ErrNotFound) {
		return fmt.Errorf("%w: %s (see `credbroker session list`)", ErrNotFound, id)
	}
	if err != nil {
		return fmt.Errorf("%w: read session %s: %v", ErrStoreUnavailable, id, err)
	}
	if err := b.mayEnd(c, s); err != nil {
		return err
	}
	if s.State != leases.SessionActive {
		return fmt.Errorf("%w: session %s is %s", ErrBadRequest, id, s.State)
	}
	return nil
}

// endLocked revokes a session; the caller holds the session lock.
func (b *Broker) endLocked(ctx context.Context, id, reason string) error {
	return b.endAt(ctx, id, reason, b.now())
}

// endAt is endLocked with the time the end was asked for. The dir is wiped
// and the leases revoked even when the store is unreachable (revocation
// never waits for the database): then the leases are those this broker
// holds in memory, the end goes into the backlog, and the error wraps
// ErrPending and ErrStoreUnavailable.
func (b *Broker) endAt(ctx context.Context, id, reason string, at time.Time) error {
	s, err := b.store.GetSession(ctx, id)
	if errors.Is(err, leases.ErrNotFound) {
		return err
	}
	if err != nil {
		cs, _, ok := b.cache.get(id)
		if !ok {
			return fmt.Errorf("%w: read session %s: %v", ErrStoreUnavailable, id, err)
		}
		s = cs
	} else if s.State == leases.SessionEnded {
		return nil // ended meanwhile (a failed start settled later): nothing to do, nothing to audit twice
	}
	return b.endFrom(ctx, s, err, reason, at)
}

// endFrom is endAt once the session was read: s as the store returned it,
// or (readErr set) as this broker holds it in memory.
func (b *Broker) endFrom(ctx context.Context, s leases.Session, readErr error, reason string, at time.Time) error {
	id := s.ID
	b.closeEgress(id)   // the sandbox's network goes first, before any store or server call
	storeErr := readErr // set once the store failed: no more calls are tried
	var err error
	if s.State == leases.SessionActive || s.State == leases.SessionStarting {
		s.State, s.EndReason, s.EndedAt = leases.SessionEnding, reason, at
		if storeErr == nil {
			if err := b.store.UpdateSession(ctx, s); err != nil {
				storeErr = fmt.Errorf("mark session ending: %w", err)
			}
		}
		b.cache.update(s)
		b.at("end-after-mark-ending")
	}
	// Take the files away first: the sandbox loses access at once, even
	// before the servers have answered.
	if err := b.env.MarkRevoked(id); err != nil {
		b.log.Debug("mark session dir revoked", "session", id, "err", err)
	}
	if err := b.env.Remove(id); err != nil {
		b.log.Error("remove session dir", "session", id, "err", err)
	}
	b.at("end-after-wipe")
	var ls []leases.Lease
	if storeErr == nil {
		if ls, err = b.store.ListLeases(ctx, id); err != nil {
			storeErr = fmt.Errorf("list leases: %w", err)
		}
	}
	if storeErr != nil {
		_, ls, _ = b.cache.get(id)
	}
	pending, werr := b.revokeLeases(ctx, ls, reason, storeErr != nil)
	if storeErr == nil && werr != nil {
		storeErr = werr
	}
	if storeErr == nil && pending > 0 {
		return fmt.Errorf("%w: %d of %d leases of %s could not be revoked yet; they are retried and shown by `credbroker status`", ErrPending, pending, len(ls), id)
	}
	b.at("end-before-mark-ended")
	if storeErr == nil {
		s.State = leases.SessionEnded
		if s.EndedAt.IsZero() {
			s.EndedAt = at
		}
		if err := b.store.UpdateSession(ctx, s); err != nil {
			storeErr = fmt.Errorf("mark session ended: %w", err)
		}
	}
	if storeErr != nil {
		b.backlog.addEnd(id, reason, s.EndedAt)
		b.log.Warn("lease store unavailable: session wiped and revoked at the providers; its end is recorded when the store is back",
			"session", id, "revoked", len(ls)-pending, "pending", pending, "err", storeErr)
		revoked := fmt.Sprintf("%d of %d leases it holds are revoked at the providers", len(ls)-pending, len(ls))
		if len(ls) == 0 {
			revoked = "it holds no recorded lease"
		}
		return fmt.Errorf("%w: %w: session %s: its dir is wiped and %s, "+
			"but the lease store cannot record it (%v); the broker records it as soon as the store is back",
			ErrPending, ErrStoreUnavailable, id, revoked, storeErr)
	}
	b.record(Event{Event: EvSessionEnd, Session: id, Role: s.Role, Reason: reason})
	b.locks.Delete(id)
	b.cache.drop(id)
	return nil
}

// revokeLeases revokes ls (tokens last, so their children go first and
// nothing is revoked twice needlessly) and returns how many remain pending.
// With offline (the store is unreachable) it records nothing; otherwise the
// first failed store write is returned and no more are tried.
func (b *Broker) revokeLeases(ctx context.Context, ls []leases.Lease, reason string, offline bool) (int, error) {
	sort.SliceStable(ls, func(i, j int) bool { return ls[i].Kind != "token" && ls[j].Kind == "token" })
	var (
		mu       sync.Mutex
		pending  int
		storeErr error
	)
	// Tokens go last (their children's leases first); within each group up
	// to revokeWorkers revocations are in flight, which matters only for
	// the per-lease fallback of revoke --all with many sessions.
	split := sort.Search(len(ls), func(i int) bool { return ls[i].Kind == "token" })
	for _, group := range [][]leases.Lease{ls[:split], ls[split:]} {
		var wg sync.WaitGroup
		sem := make(chan struct{}, revokeWorkers)
		for _, l := range group {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				mu.Lock()
				off := offline || storeErr != nil
				mu.Unlock()
				ok, err := b.revokeLease(ctx, l, reason, off)
				mu.Lock()
				if !ok {
					pending++
				}
				if storeErr == nil {
					storeErr = err
				}
				mu.Unlock()
			})
		}
		wg.Wait()
	}
	return pending, storeErr
}

// revokeWorkers bounds concurrent per-lease revocations.
const revokeWorkers = 8

// revokeLease revokes one lease and deletes it from the store only once the
// provider confirmed; on failure it is kept pending with a backoff. With
// offline it only revokes; it returns the error of a failed store write.
func (b *Broker) revokeLease(ctx context.Context, l leases.Lease, reason string, offline bool) (bool, error) {
	p, ok := b.provs.Get(l.Provider)
	var err error
	if !ok {
		err = fmt.Errorf("provider %s is not configured", l.Provider)
	} else {
		err = b.revokeTimed(ctx, p, l)
	}
	var notice *providers.Notice
	if errors.As(err, &notice) {
		b.record(Event{Event: EvProviderNotice, Session: l.SessionID, Provider: l.Provider, Lease: l.ID, Reason: notice.Msg})
		b.log.Warn("provider notice", "provider", l.Provider, "lease", l.ID, "notice", notice.Msg)
		err = nil
	}
	var storeErr error
	if err == nil || errors.Is(err, providers.ErrAlreadyRevoked) {
		b.at("after-lease-revoke")
		if !offline {
			if derr := b.store.DeleteLease(ctx, l.ID); derr != nil {
				b.log.Error("delete revoked lease", "lease", l.ID, "err", derr)
				storeErr = fmt.Errorf("delete revoked lease %s: %w", l.ID, derr)
			}
		}
		b.cache.dropLease(l.SessionID, l.ID)
		b.record(Event{Event: EvLeaseRevoke, Session: l.SessionID, Provider: l.Provider, Lease: l.ID, External: l.ExternalID, Reason: reason})
		return true, storeErr
	}
	l.State = leases.LeaseRevokePending
	l.Attempts++
	l.LastError = err.Error()
	l.NextAttempt = b.now().Add(backoff(l.Attempts))
	if !offline {
		if uerr := b.store.UpdateLease(ctx, l); uerr != nil {
			b.log.Error("record pending revocation", "lease", l.ID, "err", uerr)
			storeErr = fmt.Errorf("record pending revocation of %s: %w", l.ID, uerr)
		}
	}
	b.record(Event{Event: EvLeaseRevokeFail, Session: l.SessionID, Provider: l.Provider, Lease: l.ID, External: l.ExternalID, Reason: reason, Error: err.Error()})
	b.log.Warn("revocation failed; will retry", "lease", l.ID, "attempt", l.Attempts, "err", err)
	return false, storeErr
}

// backoff is 2s, 4s, 8s … capped at 5 minutes.
func backoff(attempt int) time.Duration {
	d := 2 * time.Second << min(attempt-1, 8)
	return min(d, 5*time.Minute)
}

func (b *Broker) isDaemonUID(uid int) bool { return uid == daemonUID }
