package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.IncidentWatcher = (*Store)(nil)

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
	s.wakeWatchers()
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

// WatchIncident reports incidents set through this Store value: an SQLite
// file belongs to one broker, so there is no one else to hear from. It
// reports the lock in place when it starts, then each SetIncident.
func (s *Store) WatchIncident(ctx context.Context, declared func(leases.Incident), lost func(error)) error {
	wake := make(chan struct{}, 1)
	s.watchMu.Lock()
	if s.watchers == nil {
		s.watchers = map[chan struct{}]bool{}
	}
	s.watchers[wake] = true
	s.watchMu.Unlock()
	defer func() {
		s.watchMu.Lock()
		delete(s.watchers, wake)
		s.watchMu.Unlock()
	}()
	for {
		in, ok, err := s.GetIncident(ctx)
		switch {
		case err != nil && ctx.Err() == nil && lost != nil:
			lost(err)
		case err == nil && ok:
			declared(in)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// wakeWatchers tells every WatchIncident call to read the lock again.
func (s *Store) wakeWatchers() {
	s.watchMu.Lock()
	defer s.watchMu.Unlock()
	for w := range s.watchers {
		select {
		case w <- struct{}{}:
		default: // already woken; it reads the latest state
		}
	}
}
