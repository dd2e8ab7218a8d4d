package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/leases"
)

// SetIncident persists the incident lock, replacing any earlier one.
func (s *Store) SetIncident(ctx context.Context, in leases.Incident) error {
	declared, err := encTime(in.DeclaredAt)
	if err != nil {
		return fmt.Errorf("sqlite: set incident: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT OR REPLACE INTO incident
		(singleton, reason, declared_at, caller_uid) VALUES (1, ?, ?, ?)`,
		in.Reason, declared, in.CallerUID)
	if err != nil {
		return fmt.Errorf("sqlite: set incident: %w", err)
	}
	return nil
}

// GetIncident returns the active incident, or ok=false when there is none.
func (s *Store) GetIncident(ctx context.Context) (leases.Incident, bool, error) {
	var (
		in       leases.Incident
		declared sql.NullInt64
	)
	err := s.db.QueryRowContext(ctx,
		`SELECT reason, declared_at, caller_uid FROM incident WHERE singleton = 1`).
		Scan(&in.Reason, &declared, &in.CallerUID)
	if errors.Is(err, sql.ErrNoRows) {
		return leases.Incident{}, false, nil
	}
	if err != nil {
		return leases.Incident{}, false, fmt.Errorf("sqlite: get incident: %w", err)
	}
	in.DeclaredAt = decTime(declared)
	return in, true, nil
}

// ClearIncident removes the lock; clearing when there is none is not an
// error.
func (s *Store) ClearIncident(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM incident`); err != nil {
		return fmt.Errorf("sqlite: clear incident: %w", err)
	}
	return nil
}
