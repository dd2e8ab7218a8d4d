package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/credbroker/credbroker/leases"
)

// incidentChannel is the LISTEN/NOTIFY channel SetIncident notifies.
const incidentChannel = "credbroker_incident"

// SetIncident persists the incident lock, replacing any earlier one, and
// notifies every broker watching (WatchIncident) in the same transaction:
// PostgreSQL delivers the notice when, and only if, the lock commits.
func (s *Store) SetIncident(ctx context.Context, in leases.Incident) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	declared, err := encTime(in.DeclaredAt)
	if err != nil {
		return s.errorf("postgres: set incident: %w", err)
	}
	// A batch is one implicit transaction (see RecordLeases).
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO incident (singleton, reason, declared_at, caller_uid)
		VALUES (1, $1, $2, $3)
		ON CONFLICT (singleton) DO UPDATE SET reason = excluded.reason,
			declared_at = excluded.declared_at, caller_uid = excluded.caller_uid`,
		in.Reason, declared, in.CallerUID)
	b.Queue(`SELECT pg_notify($1, '')`, incidentChannel)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.errorf("postgres: set incident: %w", err)
	}
	return nil
}

// GetIncident returns the active incident, or ok=false when there is none.
func (s *Store) GetIncident(ctx context.Context) (leases.Incident, bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	in, ok, err := readIncident(ctx, s.pool)
	if err != nil {
		return leases.Incident{}, false, s.errorf("postgres: get incident: %w", err)
	}
	return in, ok, nil
}

// querier is a pool or a single connection.
type querier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readIncident(ctx context.Context, q querier) (leases.Incident, bool, error) {
	var (
		in       leases.Incident
		declared pgtype.Timestamptz
	)
	err := q.QueryRow(ctx, `SELECT reason, declared_at, caller_uid FROM incident WHERE singleton = 1`).
		Scan(&in.Reason, &declared, &in.CallerUID)
	if errors.Is(err, pgx.ErrNoRows) {
		return leases.Incident{}, false, nil
	}
	if err != nil {
		return leases.Incident{}, false, err
	}
	in.DeclaredAt = decTime(declared)
	return in, true, nil
}

// ClearIncident removes the lock; clearing when there is none is not an
// error.
func (s *Store) ClearIncident(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM incident`); err != nil {
		return s.errorf("postgres: clear incident: %w", err)
	}
	return nil
}
