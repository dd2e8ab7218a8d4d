package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/credbroker/credbroker/leases"
)

// PutIntent inserts or replaces an intent.
func (s *Store) PutIntent(ctx context.Context, in leases.Intent) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	created, err := encTime(in.CreatedAt)
	if err != nil {
		return s.errorf("postgres: put intent %s: %w", in.ID, err)
	}
	data, err := encData(in.Data)
	if err != nil {
		return s.errorf("postgres: put intent %s: %w", in.ID, err)
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO intents (id, session_id, provider, created_at, data)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET session_id = excluded.session_id,
			provider = excluded.provider, created_at = excluded.created_at, data = excluded.data`,
		in.ID, in.SessionID, in.Provider, created, data)
	if err != nil {
		return s.errorf("postgres: put intent %s: %w", in.ID, err)
	}
	return nil
}

// DeleteIntent removes an intent; a missing one is not an error.
func (s *Store) DeleteIntent(ctx context.Context, id string) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `DELETE FROM intents WHERE id = $1`, id); err != nil {
		return s.errorf("postgres: delete intent %s: %w", id, err)
	}
	return nil
}

// ListIntents returns every intent ordered by CreatedAt, then ID.
func (s *Store) ListIntents(ctx context.Context) ([]leases.Intent, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT id, session_id, provider, created_at, data
		FROM intents ORDER BY created_at NULLS FIRST, id`)
	if err != nil {
		return nil, s.errorf("postgres: list intents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (leases.Intent, error) {
		var (
			in      leases.Intent
			created pgtype.Timestamptz
			data    []byte
		)
		if err := r.Scan(&in.ID, &in.SessionID, &in.Provider, &created, &data); err != nil {
			return in, err
		}
		in.CreatedAt = decTime(created)
		in.Data, err = decData(data)
		return in, err
	})
	if err != nil {
		return nil, s.errorf("postgres: list intents: %w", err)
	}
	return out, nil
}
