package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/credbroker/credbroker/leases"
)

// PutIntent inserts or replaces an intent.
func (s *Store) PutIntent(ctx context.Context, in leases.Intent) error {
	created, err := encTime(in.CreatedAt)
	if err != nil {
		return fmt.Errorf("sqlite: put intent %s: %w", in.ID, err)
	}
	data, err := encData(in.Data)
	if err != nil {
		return fmt.Errorf("sqlite: put intent %s: %w", in.ID, err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT OR REPLACE INTO intents
		(id, session_id, provider, created_at, data) VALUES (?, ?, ?, ?, ?)`,
		in.ID, in.SessionID, in.Provider, created, data)
	if err != nil {
		return fmt.Errorf("sqlite: put intent %s: %w", in.ID, err)
	}
	return nil
}

// DeleteIntent removes an intent; a missing one is not an error.
func (s *Store) DeleteIntent(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM intents WHERE id = ?`, id); err != nil {
		return fmt.Errorf("sqlite: delete intent %s: %w", id, err)
	}
	return nil
}

// ListIntents returns every intent ordered by CreatedAt, then ID.
func (s *Store) ListIntents(ctx context.Context) ([]leases.Intent, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, session_id, provider, created_at, data
		FROM intents ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list intents: %w", err)
	}
	defer rows.Close()
	var out []leases.Intent
	for rows.Next() {
		var (
			in      leases.Intent
			created sql.NullInt64
			data    string
		)
		if err := rows.Scan(&in.ID, &in.SessionID, &in.Provider, &created, &data); err != nil {
			return nil, fmt.Errorf("sqlite: list intents: %w", err)
		}
		in.CreatedAt = decTime(created)
		if in.Data, err = decData(data); err != nil {
			return nil, fmt.Errorf("sqlite: list intents: intent %s: %w", in.ID, err)
		}
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list intents: %w", err)
	}
	return out, nil
}
