package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/credbroker/credbroker/leases"
)

// BeginSession inserts sess and puts every intent of ins in one
// transaction.
func (s *Store) BeginSession(ctx context.Context, sess leases.Session, ins []leases.Intent) error {
	ts, err := encTimes(sess.CreatedAt, sess.ExpiresAt, sess.EndedAt)
	if err != nil {
		return fmt.Errorf("sqlite: begin session %s: %w", sess.ID, err)
	}
	rows := make([][]any, len(ins))
	for i, in := range ins {
		created, err := encTime(in.CreatedAt)
		if err != nil {
			return fmt.Errorf("sqlite: begin session %s: intent %s: %w", sess.ID, in.ID, err)
		}
		data, err := encData(in.Data)
		if err != nil {
			return fmt.Errorf("sqlite: begin session %s: intent %s: %w", sess.ID, in.ID, err)
		}
		rows[i] = []any{in.ID, in.SessionID, in.Provider, created, data}
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (`+sessionCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			sess.ID, sess.Role, sess.UID, sess.CallerUID, sess.Dir,
			ts[0], ts[1], string(sess.State), sess.EndReason, ts[2], sess.HostID); err != nil {
			return err
		}
		for i, args := range rows {
			if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO intents
				(id, session_id, provider, created_at, data) VALUES (?, ?, ?, ?, ?)`, args...); err != nil {
				return fmt.Errorf("intent %s: %w", ins[i].ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: begin session %s: %w", sess.ID, err)
	}
	return nil
}

// RecordLeaseSets inserts the leases of every set and deletes their
// intents in one transaction.
func (s *Store) RecordLeaseSets(ctx context.Context, sets []leases.LeaseSet) error {
	var rows [][]any
	var ids []string
	for _, set := range sets {
		for _, l := range set.Leases {
			args, err := leaseArgs(l)
			if err != nil {
				return fmt.Errorf("sqlite: record lease sets (intent %q): lease %s: %w", set.IntentID, l.ID, err)
			}
			rows = append(rows, append([]any{l.ID}, args...))
			ids = append(ids, l.ID)
		}
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
					return fmt.Errorf("lease %s: %w", ids[i], err)
				}
			}
		}
		for _, set := range sets {
			if set.IntentID == "" {
				continue
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM intents WHERE id = ?`, set.IntentID); err != nil {
				return fmt.Errorf("delete intent %s: %w", set.IntentID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: record lease sets: %w", err)
	}
	return nil
}
