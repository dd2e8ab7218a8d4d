package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.Batcher = (*Store)(nil)

// DeleteLeases removes the leases with ids in one statement.
func (s *Store) DeleteLeases(ctx context.Context, ids []string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if len(ids) == 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM leases WHERE id = ANY($1)`, ids); err != nil {
		return s.errorf("postgres: delete %d leases: %w", len(ids), err)
	}
	return nil
}

// FinishSessions marks sessions ended (no lease left) or ending, keeping an
// earlier end reason and time, in one statement; it returns the ids it
// marked ended, in the order of ids.
func (s *Store) FinishSessions(ctx context.Context, ids []string, reason string, at time.Time) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if len(ids) == 0 {
		return nil, nil
	}
	endedAt, err := encTime(at)
	if err != nil {
		return nil, s.errorf("postgres: finish sessions: %w", err)
	}
	rows, err := s.pool.Query(ctx, `UPDATE sessions SET
			state = CASE WHEN EXISTS (SELECT 1 FROM leases WHERE leases.session_id = sessions.id) THEN $2 ELSE $3 END,
			end_reason = CASE WHEN end_reason = '' THEN $4 ELSE end_reason END,
			ended_at = COALESCE(ended_at, $5)
		WHERE id = ANY($1) AND state <> $3
		RETURNING id, state`,
		ids, string(leases.SessionEnding), string(leases.SessionEnded), reason, endedAt)
	if err != nil {
		return nil, s.errorf("postgres: finish %d sessions: %w", len(ids), err)
	}
	type row struct{ ID, State string }
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return nil, s.errorf("postgres: finish %d sessions: %w", len(ids), err)
	}
	ended := map[string]bool{}
	for _, r := range got {
		ended[r.ID] = r.State == string(leases.SessionEnded)
	}
	var out []string
	for _, id := range ids {
		if ended[id] {
			out = append(out, id)
			delete(ended, id) // an id given twice is reported once
		}
	}
	return out, nil
}
