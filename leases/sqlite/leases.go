package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/credbroker/credbroker/leases"
)

const leaseCols = `id, session_id, provider, kind, external_id, issued_at, expires_at,
	renewable, state, attempts, last_error, next_attempt, data`

// RecordLeases inserts ls and deletes the intent intentID (if non-empty) in
// one transaction: either all of it happens or none. An id that already
// exists fails the whole call.
func (s *Store) RecordLeases(ctx context.Context, intentID string, ls []leases.Lease) error {
	rows := make([][]any, len(ls))
	for i, l := range ls {
		args, err := leaseArgs(l)
		if err != nil {
			return fmt.Errorf("sqlite: record leases (intent %q): lease %s: %w", intentID, l.ID, err)
		}
		rows[i] = append([]any{l.ID}, args...)
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if len(rows) > 0 {
			stmt, err := tx.PrepareContext(ctx, `INSERT INTO leases (`+leaseCols+`)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for i, args := range rows {
				if _, err := stmt.ExecContext(ctx, args...); err != nil {
					return fmt.Errorf("lease %s: %w", ls[i].ID, err)
				}
			}
		}
		if intentID != "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM intents WHERE id = ?`, intentID); err != nil {
				return fmt.Errorf("delete intent: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: record leases (intent %q): %w", intentID, err)
	}
	return nil
}

// UpdateLease replaces the stored lease with the same ID, or returns an
// error wrapping leases.ErrNotFound.
func (s *Store) UpdateLease(ctx context.Context, l leases.Lease) error {
	args, err := leaseArgs(l)
	if err != nil {
		return fmt.Errorf("sqlite: update lease %s: %w", l.ID, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE leases SET
		session_id = ?, provider = ?, kind = ?, external_id = ?, issued_at = ?,
		expires_at = ?, renewable = ?, state = ?, attempts = ?, last_error = ?,
		next_attempt = ?, data = ?
		WHERE id = ?`, append(args, l.ID)...)
	if err := checkUpdated(res, err); err != nil {
		return fmt.Errorf("sqlite: update lease %s: %w", l.ID, err)
	}
	return nil
}

// DeleteLease removes a lease; a missing one is not an error.
func (s *Store) DeleteLease(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM leases WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete lease %s: %w", id, err)
	}
	return nil
}

// GetLease returns the lease with id, or an error wrapping
// leases.ErrNotFound.
func (s *Store) GetLease(ctx context.Context, id string) (leases.Lease, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+leaseCols+` FROM leases WHERE id = ?`, id)
	l, err := scanLease(row)
	if errors.Is(err, sql.ErrNoRows) {
		return leases.Lease{}, fmt.Errorf("sqlite: get lease %s: %w", id, leases.ErrNotFound)
	}
	if err != nil {
		return leases.Lease{}, fmt.Errorf("sqlite: get lease %s: %w", id, err)
	}
	return l, nil
}

// ListLeases returns the leases of sessionID, or of every session when it is
// empty, ordered by IssuedAt then ID.
func (s *Store) ListLeases(ctx context.Context, sessionID string) ([]leases.Lease, error) {
	if sessionID == "" {
		return s.queryLeases(ctx, "list leases",
			`SELECT `+leaseCols+` FROM leases ORDER BY issued_at, id`)
	}
	return s.queryLeases(ctx, "list leases of session "+sessionID,
		`SELECT `+leaseCols+` FROM leases WHERE session_id = ? ORDER BY issued_at, id`, sessionID)
}

// ListLeasesByState returns every lease in state st, ordered by IssuedAt
// then ID.
func (s *Store) ListLeasesByState(ctx context.Context, st leases.LeaseState) ([]leases.Lease, error) {
	return s.queryLeases(ctx, "list leases in state "+string(st),
		`SELECT `+leaseCols+` FROM leases WHERE state = ? ORDER BY issued_at, id`, string(st))
}

// FindLeases returns the leases matching f, ordered by IssuedAt then ID.
func (s *Store) FindLeases(ctx context.Context, f leases.LeaseFilter) ([]leases.Lease, error) {
	var (
		where []string
		args  []any
	)
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.HostID != "" {
		where = append(where, "(session_id = ? OR session_id IN (SELECT id FROM sessions WHERE host_id = ?))")
		args = append(args, leases.BrokerSession(f.HostID), f.HostID)
	}
	if f.BrokerOnly {
		// substr, not LIKE: '_' is a LIKE wildcard.
		where = append(where, "(session_id = ? OR substr(session_id, 1, ?) = ?)")
		prefix := leases.BrokerSessionID + "/"
		args = append(args, leases.BrokerSessionID, len(prefix), prefix)
	}
	q := `SELECT ` + leaseCols + ` FROM leases`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return s.queryLeases(ctx, "find leases", q+` ORDER BY issued_at, id`, args...)
}

// queryLeases runs a SELECT of leaseCols; op names it in errors.
func (s *Store) queryLeases(ctx context.Context, op, q string, args ...any) ([]leases.Lease, error) {
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	defer rows.Close()
	var out []leases.Lease
	for rows.Next() {
		l, err := scanLease(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: %s: %w", op, err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: %s: %w", op, err)
	}
	return out, nil
}

// leaseArgs returns l's columns after id, in leaseCols order.
func leaseArgs(l leases.Lease) ([]any, error) {
	ts, err := encTimes(l.IssuedAt, l.ExpiresAt, l.NextAttempt)
	if err != nil {
		return nil, err
	}
	data, err := encData(l.Data)
	if err != nil {
		return nil, err
	}
	return []any{l.SessionID, l.Provider, l.Kind, l.ExternalID, ts[0],
		ts[1], l.Renewable, string(l.State), l.Attempts, l.LastError,
		ts[2], data}, nil
}

func scanLease(sc scanner) (leases.Lease, error) {
	var (
		l                      leases.Lease
		state, data            string
		issued, expires, retry sql.NullInt64
	)
	err := sc.Scan(&l.ID, &l.SessionID, &l.Provider, &l.Kind, &l.ExternalID,
		&issued, &expires, &l.Renewable, &state, &l.Attempts, &l.LastError,
		&retry, &data)
	if err != nil {
		return leases.Lease{}, err
	}
	l.State = leases.LeaseState(state)
	l.IssuedAt = decTime(issued)
	l.ExpiresAt = decTime(expires)
	l.NextAttempt = decTime(retry)
	if l.Data, err = decData(data); err != nil {
		return leases.Lease{}, fmt.Errorf("lease %s: %w", l.ID, err)
	}
	return l, nil
}

var _ leases.RenewalMarker = (*Store)(nil)

// MarkRenewal implements leases.RenewalMarker.
func (s *Store) MarkRenewal(ctx context.Context, ids []string, at time.Time) (int, error) {
	t, err := encTime(at)
	if err != nil {
		return 0, fmt.Errorf("sqlite: mark leases for renewal: %w", err)
	}
	n := 0
	for _, id := range ids {
		res, err := s.db.ExecContext(ctx, `UPDATE leases SET next_attempt = ? WHERE id = ? AND state = ?`, t, id, string(leases.LeaseActive))
		if err != nil {
			return n, fmt.Errorf("sqlite: mark lease %s for renewal: %w", id, err)
		}
		k, _ := res.RowsAffected()
		n += int(k)
	}
	return n, nil
}
