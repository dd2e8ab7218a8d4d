package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/credbroker/credbroker/leases"
)

const sessionCols = `id, role, uid, caller_uid, dir, created_at, expires_at, state, end_reason, ended_at, host_id`

// CreateSession inserts s; it fails if the id exists.
func (s *Store) CreateSession(ctx context.Context, sess leases.Session) error {
	ts, err := encTimes(sess.CreatedAt, sess.ExpiresAt, sess.EndedAt)
	if err != nil {
		return fmt.Errorf("sqlite: create session %s: %w", sess.ID, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		sess.ID, sess.Role, sess.UID, sess.CallerUID, sess.Dir,
		ts[0], ts[1], string(sess.State), sess.EndReason, ts[2], sess.HostID)
	if err != nil {
		return fmt.Errorf("sqlite: create session %s: %w", sess.ID, err)
	}
	return nil
}

// GetSession returns the session with id, or an error wrapping
// leases.ErrNotFound.
func (s *Store) GetSession(ctx context.Context, id string) (leases.Session, error) {
	row := s.db.QueryRowContext(ctx, `SELECT `+sessionCols+` FROM sessions WHERE id = ?`, id)
	sess, err := scanSession(row)
	if errors.Is(err, sql.ErrNoRows) {
		return leases.Session{}, fmt.Errorf("sqlite: get session %s: %w", id, leases.ErrNotFound)
	}
	if err != nil {
		return leases.Session{}, fmt.Errorf("sqlite: get session %s: %w", id, err)
	}
	return sess, nil
}

// ListSessions returns the sessions matching f ordered by CreatedAt (then
// ID, so equal times list in a stable order).
func (s *Store) ListSessions(ctx context.Context, f leases.SessionFilter) ([]leases.Session, error) {
	var (
		where []string
		args  []any
	)
	if len(f.States) > 0 {
		marks := make([]string, len(f.States))
		for i, st := range f.States {
			marks[i] = "?"
			args = append(args, string(st))
		}
		where = append(where, "state IN ("+strings.Join(marks, ", ")+")")
	}
	if !f.ExpiredBefore.IsZero() {
		cutoff, err := encTime(f.ExpiredBefore)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list sessions: %w", err)
		}
		// The zero ExpiresAt (NULL) is before any cutoff, as in Go.
		where = append(where, "(expires_at IS NULL OR expires_at < ?)")
		args = append(args, cutoff)
	}
	if !f.ExpiresAfter.IsZero() {
		after, err := encTime(f.ExpiresAfter)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list sessions: %w", err)
		}
		where = append(where, "expires_at > ?")
		args = append(args, after)
	}
	if f.HostID != "" {
		where = append(where, "host_id = ?")
		args = append(args, f.HostID)
	}
	q := `SELECT ` + sessionCols + ` FROM sessions`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at, id`

	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list sessions: %w", err)
	}
	defer rows.Close()
	var out []leases.Session
	for rows.Next() {
		sess, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list sessions: %w", err)
		}
		out = append(out, sess)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list sessions: %w", err)
	}
	return out, nil
}

// UpdateSession replaces the stored session with the same ID, or returns an
// error wrapping leases.ErrNotFound. The host id is kept: a session's owner
// never changes.
func (s *Store) UpdateSession(ctx context.Context, sess leases.Session) error {
	ts, err := encTimes(sess.CreatedAt, sess.ExpiresAt, sess.EndedAt)
	if err != nil {
		return fmt.Errorf("sqlite: update session %s: %w", sess.ID, err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET
		role = ?, uid = ?, caller_uid = ?, dir = ?, created_at = ?,
		expires_at = ?, state = ?, end_reason = ?, ended_at = ?
		WHERE id = ?`,
		sess.Role, sess.UID, sess.CallerUID, sess.Dir, ts[0],
		ts[1], string(sess.State), sess.EndReason, ts[2], sess.ID)
	if err := checkUpdated(res, err); err != nil {
		return fmt.Errorf("sqlite: update session %s: %w", sess.ID, err)
	}
	return nil
}

// ActivateSession marks a starting session active in one statement, or
// returns an error wrapping leases.ErrStateChanged (it is in another state)
// or leases.ErrNotFound.
func (s *Store) ActivateSession(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET state = ? WHERE id = ? AND state = ?`,
		string(leases.SessionActive), id, string(leases.SessionStarting))
	err = checkUpdated(res, err)
	if errors.Is(err, leases.ErrNotFound) {
		cur, gerr := s.GetSession(ctx, id)
		if gerr != nil {
			return fmt.Errorf("sqlite: activate session %s: %w", id, gerr)
		}
		err = fmt.Errorf("%w: it is %s", leases.ErrStateChanged, cur.State)
	}
	if err != nil {
		return fmt.Errorf("sqlite: activate session %s: %w", id, err)
	}
	return nil
}

func scanSession(sc scanner) (leases.Session, error) {
	var (
		sess                        leases.Session
		state                       string
		created, expires, endedTime sql.NullInt64
	)
	err := sc.Scan(&sess.ID, &sess.Role, &sess.UID, &sess.CallerUID, &sess.Dir,
		&created, &expires, &state, &sess.EndReason, &endedTime, &sess.HostID)
	if err != nil {
		return leases.Session{}, err
	}
	sess.State = leases.SessionState(state)
	sess.CreatedAt = decTime(created)
	sess.ExpiresAt = decTime(expires)
	sess.EndedAt = decTime(endedTime)
	return sess, nil
}

// checkUpdated turns an UPDATE that matched no row into leases.ErrNotFound.
func checkUpdated(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return leases.ErrNotFound
	}
	return nil
}
