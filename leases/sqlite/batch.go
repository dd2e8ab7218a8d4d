package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.Batcher = (*Store)(nil)

// DeleteLeases removes the leases with ids in one transaction.
func (s *Store) DeleteLeases(ctx context.Context, ids []string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM leases WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, id); err != nil {
				return fmt.Errorf("lease %s: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete %d leases: %w", len(ids), err)
	}
	return nil
}

// FinishSessions marks sessions ended (no lease left) or ending, in one
// transaction.
func (s *Store) FinishSessions(ctx context.Context, ids []string, reason string, at time.Time) ([]string, error) {
	ts, err := encTimes(at)
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish sessions: %w", err)
	}
	var ended []string
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE sessions SET
			state = CASE WHEN EXISTS (SELECT 1 FROM leases WHERE session_id = sessions.id) THEN ? ELSE ? END,
			end_reason = CASE WHEN end_reason = '' THEN ? ELSE end_reason END,
			ended_at = COALESCE(ended_at, ?)
			WHERE id = ? AND state != ?
			RETURNING state`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			var st string
			err := stmt.QueryRowContext(ctx, string(leases.SessionEnding), string(leases.SessionEnded), reason, ts[0], id,
				string(leases.SessionEnded)).Scan(&st)
			if err == sql.ErrNoRows {
				continue // unknown or already ended
			}
			if err != nil {
				return fmt.Errorf("session %s: %w", id, err)
			}
			if st == string(leases.SessionEnded) {
				ended = append(ended, id)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish %d sessions: %w", len(ids), err)
	}
	return ended, nil
}
