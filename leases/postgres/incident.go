package postgres

import (
	"context"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/credbroker/credbroker/leases"
)

// SetIncident persists the incident lock, replacing any earlier one.
func (s *Store) SetIncident(ctx context.Context, in leases.Incident) error {
	declared, err := encTime(in.DeclaredAt)
	if err != nil {
		return s.errorf("postgres: set incident: %w", err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO incident (singleton, reason, declared_at, caller_uid)
		VALUES (1, $1, $2, $3)
		ON CONFLICT (singleton) DO UPDATE SET reason = excluded.reason,
			declared_at = excluded.declared_at, caller_uid = excluded.caller_uid`,
		in.Reason, declared, in.CallerUID)
	if err != nil {
		return s.errorf("postgres: set incident: %w", err)
	}
	return nil
}

// GetIncident returns the active incident, or ok=false when there is none.
func (s *Store) GetIncident(ctx context.Context) (leases.Incident, bool, error) {
	var (
		in       leases.Incident
		declared pgtype.Timestamptz
	)
	err := s.pool.QueryRow(ctx, `SELECT reason, declared_at, caller_uid FROM incident WHERE singleton = 1`).
		Scan(&in.Reason, &declared, &in.CallerUID)
	if errors.Is(err, pgx.ErrNoRows) {
		return leases.Incident{}, false, nil
	}
	if err != nil {
		return leases.Incident{}, false, s.errorf("postgres: get incident: %w", err)
	}
	in.DeclaredAt = decTime(declared)
	return in, true, nil
}

// ClearIncident removes the lock; clearing when there is none is not an
// error.
func (s *Store) ClearIncident(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM incident`); err != nil {
		return s.errorf("postgres: clear incident: %w", err)
	}
	return nil
}
