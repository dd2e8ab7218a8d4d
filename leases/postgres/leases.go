package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/credbroker/credbroker/leases"
)

const leaseCols = `id, session_id, provider, kind, external_id, issued_at, expires_at,
	renewable, state, attempts, last_error, next_attempt, data`

// RecordLeases inserts ls and deletes the intent intentID (if non-empty) in
// one transaction: either all of it happens or none. An id that already
// exists fails the whole call.
//
// The statements go as one pgx batch: one round trip, and PostgreSQL runs
// every statement before the batch's single Sync as one implicit
// transaction, so the first failure rolls back the rest. That holds in
// every query exec mode, simple protocol included.
func (s *Store) RecordLeases(ctx context.Context, intentID string, ls []leases.Lease) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	b := &pgx.Batch{}
	for _, l := range ls {
		args, err := leaseArgs(l)
		if err != nil {
			return s.errorf("postgres: record leases (intent %q): lease %s: %w", intentID, l.ID, err)
		}
		b.Queue(`INSERT INTO leases (`+leaseCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`, append([]any{l.ID}, args...)...)
	}
	if intentID != "" {
		b.Queue(`DELETE FROM intents WHERE id = $1`, intentID)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return s.errorf("postgres: record leases (intent %q): %w", intentID, err)
	}
	return nil
}

// UpdateLease replaces the stored lease with the same ID, or returns an
// error wrapping leases.ErrNotFound.
func (s *Store) UpdateLease(ctx context.Context, l leases.Lease) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	args, err := leaseArgs(l)
	if err != nil {
		return s.errorf("postgres: update lease %s: %w", l.ID, err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE leases SET
		session_id = $1, provider = $2, kind = $3, external_id = $4, issued_at = $5,
		expires_at = $6, renewable = $7, state = $8, attempts = $9, last_error = $10,
		next_attempt = $11, data = $12
		WHERE id = $13`, append(args, l.ID)...)
	if err := checkUpdated(tag, err); err != nil {
		return s.errorf("postgres: update lease %s: %w", l.ID, err)
	}
	return nil
}

// DeleteLease removes a lease; a missing one is not an error.
func (s *Store) DeleteLease(ctx context.Context, id string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE id = $1`, id); err != nil {
		return s.errorf("postgres: delete lease %s: %w", id, err)
	}
	return nil
}

// GetLease returns the lease with id, or an error wrapping
// leases.ErrNotFound.
func (s *Store) GetLease(ctx context.Context, id string) (leases.Lease, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	l, err := scanLease(s.pool.QueryRow(ctx, `SELECT `+leaseCols+` FROM leases WHERE id = $1`, id))
	if err != nil {
		return leases.Lease{}, s.errorf("postgres: get lease %s: %w", id, notFound(err))
	}
	return l, nil
}

// ListLeases returns the leases of sessionID, or of every session when it is
// empty, ordered by IssuedAt then ID.
func (s *Store) ListLeases(ctx context.Context, sessionID string) ([]leases.Lease, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if sessionID == "" {
		return s.queryLeases(ctx, "list leases",
			`SELECT `+leaseCols+` FROM leases ORDER BY issued_at NULLS FIRST, id`)
	}
	return s.queryLeases(ctx, "list leases of session "+sessionID,
		`SELECT `+leaseCols+` FROM leases WHERE session_id = $1 ORDER BY issued_at NULLS FIRST, id`, sessionID)
}

// ListLeasesByState returns every lease in state st, ordered by IssuedAt
// then ID.
func (s *Store) ListLeasesByState(ctx context.Context, st leases.LeaseState) ([]leases.Lease, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.queryLeases(ctx, "list leases in state "+string(st),
		`SELECT `+leaseCols+` FROM leases WHERE state = $1 ORDER BY issued_at NULLS FIRST, id`, string(st))
}

// FindLeases returns the leases matching f, ordered by IssuedAt then ID.
func (s *Store) FindLeases(ctx context.Context, f leases.LeaseFilter) ([]leases.Lease, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var (
		where []string
		args  []any
	)
	param := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if f.State != "" {
		where = append(where, "state = "+param(string(f.State)))
	}
	if f.HostID != "" {
		where = append(where, "(session_id = "+param(leases.BrokerSession(f.HostID))+
			" OR session_id IN (SELECT id FROM sessions WHERE host_id = "+param(f.HostID)+"))")
	}
	if f.BrokerOnly {
		// starts_with, not LIKE: '_' is a LIKE wildcard.
		where = append(where, "(session_id = "+param(leases.BrokerSessionID)+
			" OR starts_with(session_id, "+param(leases.BrokerSessionID+"/")+"))")
	}
	q := `SELECT ` + leaseCols + ` FROM leases`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	return s.queryLeases(ctx, "find leases", q+` ORDER BY issued_at NULLS FIRST, id`, args...)
}

// queryLeases runs a SELECT of leaseCols; op names it in errors.
func (s *Store) queryLeases(ctx context.Context, op, q string, args ...any) ([]leases.Lease, error) {
	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, s.errorf("postgres: %s: %w", op, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (leases.Lease, error) { return scanLease(r) })
	if err != nil {
		return nil, s.errorf("postgres: %s: %w", op, err)
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

func scanLease(row pgx.Row) (leases.Lease, error) {
	var (
		l                      leases.Lease
		state                  string
		data                   []byte
		issued, expires, retry pgtype.Timestamptz
	)
	err := row.Scan(&l.ID, &l.SessionID, &l.Provider, &l.Kind, &l.ExternalID,
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

// MarkRenewal implements leases.RenewalMarker in one statement.
func (s *Store) MarkRenewal(ctx context.Context, ids []string, at time.Time) (int, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	t, err := encTime(at)
	if err != nil {
		return 0, s.errorf("postgres: mark leases for renewal: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE leases SET next_attempt = $1 WHERE id = ANY($2) AND state = $3`, t, ids, string(leases.LeaseActive))
	if err != nil {
		return 0, s.errorf("postgres: mark leases for renewal: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
