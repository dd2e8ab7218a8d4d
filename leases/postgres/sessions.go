package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/credbroker/credbroker/leases"
)

const sessionCols = `id, role, uid, caller_uid, dir, created_at, expires_at, state, end_reason, ended_at, host_id`

// CreateSession inserts s; it fails if the id exists. A session without a
// HostID is stamped with the store's (WithHostID).
func (s *Store) CreateSession(ctx context.Context, sess leases.Session) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ts, err := encTimes(sess.CreatedAt, sess.ExpiresAt, sess.EndedAt)
	if err != nil {
		return s.errorf("postgres: create session %s: %w", sess.ID, err)
	}
	host := sess.HostID
	if host == "" {
		host = s.hostID
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO sessions (`+sessionCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		sess.ID, sess.Role, sess.UID, sess.CallerUID, sess.Dir,
		ts[0], ts[1], string(sess.State), sess.EndReason, ts[2], host)
	if err != nil {
		return s.errorf("postgres: create session %s: %w", sess.ID, err)
	}
	return nil
}

// GetSession returns the session with id, or an error wrapping
// leases.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (leases.Session, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	row := s.pool.QueryRow(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = $1`, id)
	sess, err := scanSession(row)
	if err != nil {
		return leases.Session{}, s.errorf("postgres: get session %s: %w", id, notFound(err))
	}
	return sess, nil
}

// ListSessions returns the sessions matching f ordered by CreatedAt (then
// ID, so equal times list in a stable order).
func (s *Store) ListSessions(ctx context.Context, f leases.SessionFilter) ([]leases.Session, error) {
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
	if len(f.States) > 0 {
		states := make([]string, len(f.States))
		for i, st := range f.States {
			states[i] = string(st)
		}
		where = append(where, "state = ANY("+param(states)+")")
	}
	if !f.ExpiredBefore.IsZero() {
		cutoff, err := encTime(f.ExpiredBefore)
		if err != nil {
			return nil, s.errorf("postgres: list sessions: %w", err)
		}
		// The zero ExpiresAt (NULL) is before any cutoff, as in Go.
		where = append(where, "(expires_at IS NULL OR expires_at < "+param(cutoff)+")")
	}
	if !f.ExpiresAfter.IsZero() {
		after, err := encTime(f.ExpiresAfter)
		if err != nil {
			return nil, s.errorf("postgres: list sessions: %w", err)
		}
		where = append(where, "expires_at > "+param(after))
	}
	if f.HostID != "" {
		where = append(where, "host_id = "+param(f.HostID))
	}
	q := `SELECT ` + sessionCols + ` FROM sessions`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at NULLS FIRST, id`

	rows, err := s.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, s.errorf("postgres: list sessions: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (leases.Session, error) { return scanSession(r) })
	if err != nil {
		return nil, s.errorf("postgres: list sessions: %w", err)
	}
	return out, nil
}

// UpdateSession replaces the stored session with the same ID, or returns an
// error wrapping leases.ErrNotFound. The host id is kept: a session's owner
// never changes.
func (s *Store) UpdateSession(ctx context.Context, sess leases.Session) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	ts, err := encTimes(sess.CreatedAt, sess.ExpiresAt, sess.EndedAt)
	if err != nil {
		return s.errorf("postgres: update session %s: %w", sess.ID, err)
	}
	tag, err := s.pool.Exec(ctx, `UPDATE sessions SET
		role = $1, uid = $2, caller_uid = $3, dir = $4, created_at = $5,
		expires_at = $6, state = $7, end_reason = $8, ended_at = $9
		WHERE id = $10`,
		sess.Role, sess.UID, sess.CallerUID, sess.Dir, ts[0],
		ts[1], string(sess.State), sess.EndReason, ts[2], sess.ID)
	if err := checkUpdated(tag, err); err != nil {
		return s.errorf("postgres: update session %s: %w", sess.ID, err)
	}
	return nil
}

// ActivateSession marks a starting session active in one statement, or
// returns an error wrapping leases.ErrStateChanged (it is in another state)
// or leases.ErrNotFound.
func (s *Store) ActivateSession(ctx context.Context, id string) error {
	bctx, cancel := s.bound(ctx)
	defer cancel()
	tag, err := s.pool.Exec(bctx, `UPDATE sessions SET state = $1 WHERE id = $2 AND state = $3`,
		string(leases.SessionActive), id, string(leases.SessionStarting))
	err = checkUpdated(tag, err)
	if errors.Is(err, leases.ErrNotFound) {
		cur, gerr := s.GetSession(ctx, id)
		if gerr != nil {
			return gerr
		}
		err = fmt.Errorf("%w: it is %s", leases.ErrStateChanged, cur.State)
	}
	if err != nil {
		return s.errorf("postgres: activate session %s: %w", id, err)
	}
	return nil
}

func scanSession(row pgx.Row) (leases.Session, error) {
	var (
		sess                      leases.Session
		state                     string
		created, expires, endedAt pgtype.Timestamptz
	)
	err := row.Scan(&sess.ID, &sess.Role, &sess.UID, &sess.CallerUID, &sess.Dir,
		&created, &expires, &state, &sess.EndReason, &endedAt, &sess.HostID)
	if err != nil {
		return leases.Session{}, err
	}
	sess.State = leases.SessionState(state)
	sess.CreatedAt = decTime(created)
	sess.ExpiresAt = decTime(expires)
	sess.EndedAt = decTime(endedAt)
	return sess, nil
}
