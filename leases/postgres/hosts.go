package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.HostRegistry = (*Store)(nil)

// PutHost inserts or replaces the record of h.ID.
func (s *Store) PutHost(ctx context.Context, h leases.Host) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	seen, err := encTime(h.SeenAt)
	if err != nil {
		return s.errorf("postgres: put host %q: %w", h.ID, err)
	}
	fps, err := encData(h.Fingerprints)
	if err != nil {
		return s.errorf("postgres: put host %q: %w", h.ID, err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO hosts (host_id, fingerprints, seen_at) VALUES ($1, $2, $3)
		ON CONFLICT (host_id) DO UPDATE SET fingerprints = excluded.fingerprints, seen_at = excluded.seen_at`,
		h.ID, fps, seen); err != nil {
		return s.errorf("postgres: put host %q: %w", h.ID, err)
	}
	return nil
}

// ListHosts returns every recorded host ordered by ID.
func (s *Store) ListHosts(ctx context.Context) ([]leases.Host, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.pool.Query(ctx, `SELECT host_id, fingerprints, seen_at FROM hosts ORDER BY host_id`)
	if err != nil {
		return nil, s.errorf("postgres: list hosts: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (leases.Host, error) {
		var (
			h    leases.Host
			fps  []byte
			seen pgtype.Timestamptz
		)
		if err := r.Scan(&h.ID, &fps, &seen); err != nil {
			return h, err
		}
		h.SeenAt = decTime(seen)
		h.Fingerprints, err = decData(fps)
		return h, err
	})
	if err != nil {
		return nil, s.errorf("postgres: list hosts: %w", err)
	}
	return out, nil
}
