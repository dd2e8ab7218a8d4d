package broker

import (
	"context"
	"fmt"
	"log/slog"

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
