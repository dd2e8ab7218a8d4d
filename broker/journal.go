package broker

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// journal is the broker's providers.Journal: the write-ahead record of the
// credentials providers issue to the broker itself (Vault's epoch token).
// It writes to the lease store, audits each recorded credential like a
// session's, and reports a store failure as ErrStoreUnavailable, so that
// a start failing on it is the store's failure, not the provider's.
type journal struct {
	store leases.Store
	audit *AuditLog // nil: not audited (tests)
	log   *slog.Logger
}

var _ providers.Journal = (*journal)(nil)

// NewJournal returns the journal the daemon hands to providers (see
// providers/all.Build). audit may be nil in tests.
func NewJournal(st leases.Store, audit *AuditLog, log *slog.Logger) providers.Journal {
	if log == nil {
		log = slog.Default()
	}
	return &journal{store: st, audit: audit, log: log}
}

func (j *journal) Intend(ctx context.Context, in leases.Intent) error {
	if err := j.store.PutIntent(ctx, in); err != nil {
		return fmt.Errorf("%w: record intent %s: %v", ErrStoreUnavailable, in.ID, err)
	}
	return nil
}

func (j *journal) Record(ctx context.Context, intentID string, ls []leases.Lease) error {
	if err := j.store.RecordLeases(ctx, intentID, ls); err != nil {
		return fmt.Errorf("%w: record %d lease(s) of intent %s: %v", ErrStoreUnavailable, len(ls), intentID, err)
	}
	for _, l := range ls {
		j.record(Event{Event: EvLeaseMint, Session: l.SessionID, Provider: l.Provider, Lease: l.ID,
			External: l.ExternalID, Expires: l.ExpiresAt, Reason: "the broker's own " + l.Kind})
	}
	return nil
}

func (j *journal) Abandon(ctx context.Context, intentID string) error {
	if err := j.store.DeleteIntent(ctx, intentID); err != nil {
		return fmt.Errorf("%w: settle intent %s: %v", ErrStoreUnavailable, intentID, err)
	}
	return nil
}

func (j *journal) record(ev Event) {
	if j.audit == nil {
		return
	}
	if err := j.audit.Record(ev); err != nil {
		j.log.Error("AUDIT LOG WRITE FAILED", "event", ev.Event, "session", ev.Session, "err", err)
	}
}

var _ providers.Revocations = (*journal)(nil)

// EndedSessions implements providers.Revocations over the store: the
// ending and ended sessions of every host expiring after expiresAfter.
func (j *journal) EndedSessions(ctx context.Context, expiresAfter time.Time) ([]providers.EndedSession, error) {
	ss, err := j.store.ListSessions(ctx, leases.SessionFilter{
		States:       []leases.SessionState{leases.SessionEnding, leases.SessionEnded},
		ExpiresAfter: expiresAfter,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: list ended sessions: %v", ErrStoreUnavailable, err)
	}
	out := make([]providers.EndedSession, len(ss))
	for i, s := range ss {
		out[i] = providers.EndedSession{ID: s.ID, Role: s.Role, ExpiresAt: s.ExpiresAt, EndedAt: s.EndedAt}
	}
	return out, nil
}

// processLocks are the locks of brokers whose store is not a
// leases.Locker (SQLite: one broker per store), one mutex per name for the
// whole process.
var processLocks sync.Map // name → *sync.Mutex

// WithLock implements providers.Revocations: the store's lock when it is
// shared (leases.Locker, PostgreSQL), a process mutex otherwise.
func (j *journal) WithLock(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	if lk, ok := j.store.(leases.Locker); ok {
		return lk.WithLock(ctx, name, fn)
	}
	m, _ := processLocks.LoadOrStore(name, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	defer mu.Unlock()
	return fn(ctx)
}

// RenewEarly implements providers.Revocations: it sets NextAttempt on the
// active leases of provider of every starting or active session (of any
// host) of roles, which the owning host's refresher reads as "renew at".
func (j *journal) RenewEarly(ctx context.Context, provider string, roles []string, at time.Time) (int, error) {
	ss, err := j.store.ListSessions(ctx, leases.SessionFilter{States: []leases.SessionState{leases.SessionStarting, leases.SessionActive}})
	if err != nil {
		return 0, fmt.Errorf("%w: list live sessions: %v", ErrStoreUnavailable, err)
	}
	n := 0
	for _, s := range ss {
		if !slices.Contains(roles, s.Role) {
			continue
		}
		ls, err := j.store.ListLeases(ctx, s.ID)
		if err != nil {
			return n, fmt.Errorf("%w: list leases of %s: %v", ErrStoreUnavailable, s.ID, err)
		}
		var ids []string
		for _, l := range ls {
			if l.Provider == provider && l.State == leases.LeaseActive {
				ids = append(ids, l.ID)
			}
		}
		k, err := j.markRenewal(ctx, ls, ids, at)
		n += k
		if err != nil {
			return n, fmt.Errorf("%w: mark leases of %s for renewal: %v", ErrStoreUnavailable, s.ID, err)
		}
	}
	return n, nil
}

// markRenewal marks ids (of ls) in one statement when the store can; else
// by rewriting each lease, which a concurrent refresh of the same lease
// may overwrite (it then renews at its normal time).
func (j *journal) markRenewal(ctx context.Context, ls []leases.Lease, ids []string, at time.Time) (int, error) {
	if len(ids) == 0 {
		return 0, nil
	}
	if m, ok := j.store.(leases.RenewalMarker); ok {
		return m.MarkRenewal(ctx, ids, at)
	}
	n := 0
	for _, l := range ls {
		if !slices.Contains(ids, l.ID) {
			continue
		}
		l.NextAttempt = at
		if err := j.store.UpdateLease(ctx, l); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
