package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/leases"
)

// BeginSession inserts sess and puts every intent of ins as one pgx batch:
// one round trip and one implicit transaction (see RecordLeases). A
// session without a HostID is stamped with the store's.
func (s *Store) BeginSession(ctx context.Context, sess leases.Session, ins []leases.Intent) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ts, err := encTimes(sess.CreatedAt, sess.ExpiresAt, sess.EndedAt)
	if err != nil {
		return s.errorf("postgres: begin session %s: %w", sess.ID, err)
	}
	host := sess.HostID
	if host == "" {
		host = s.hostID
	}
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO sessions (`+sessionCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		sess.ID, sess.Role, sess.UID, sess.CallerUID, sess.Dir,
		ts[0], ts[1], string(sess.State), sess.EndReason, ts[2], host)
	for _, in := range ins {
		created, err := encTime(in.CreatedAt)
		if err != nil {
			return s.errorf("postgres: begin session %s: intent %s: %w", sess.ID, in.ID, err)
		}
		data, err := encData(in.Data)
		if err != nil {
			return s.errorf("postgres: begin session %s: intent %s: %w", sess.ID, in.ID, err)
		}
		b.Queue(`INSERT INTO intents (id, session_id, provider, created_at, data)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id,
				provider = excluded.provider, created_at = excluded.created_at, data = excluded.data`,
			in.ID, in.SessionID, in.Provider, created, data)
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.errorf("postgres: begin session %s: %w", sess.ID, err)
	}
	return nil
}

// RecordLeaseSets inserts the leases of every set and deletes their
// intents as one pgx batch (one implicit transaction, see RecordLeases).
func (s *Store) RecordLeaseSets(ctx context.Context, sets []leases.LeaseSet) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	b := &pgx.Batch{}
	for _, set := range sets {
		for _, l := range set.Leases {
			args, err := leaseArgs(l)
			if err != nil {
				return s.errorf("postgres: record lease sets (intent %q): lease %s: %w", set.IntentID, l.ID, err)
			}
			b.Queue(`INSERT INTO leases (`+leaseCols+`)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`, append([]any{l.ID}, args...)...)
		}
	}
	for _, set := range sets {
		if set.IntentID != "" {
			b.Queue(`DELETE FROM intents WHERE id = $1`, set.IntentID)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.errorf("postgres: record lease sets: %w", err)
	}
	return nil
}
