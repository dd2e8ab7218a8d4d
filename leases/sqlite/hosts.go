package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.HostRegistry = (*Store)(nil)

// PutHost inserts or replaces the record of h.ID.
func (s *Store) PutHost(ctx context.Context, h leases.Host) error {
	seen, err := encTime(h.SeenAt)
	if err != nil {
		return fmt.Errorf("sqlite: put host %q: %w", h.ID, err)
	}
	fps, err := encData(h.Fingerprints)
	if err != nil {
		return fmt.Errorf("sqlite: put host %q: %w", h.ID, err)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT OR REPLACE INTO hosts (host_id, fingerprints, seen_at)
		VALUES (?, ?, ?)`, h.ID, fps, seen); err != nil {
		return fmt.Errorf("sqlite: put host %q: %w", h.ID, err)
	}
	return nil
}

// ListHosts returns every recorded host ordered by ID.
func (s *Store) ListHosts(ctx context.Context) ([]leases.Host, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT host_id, fingerprints, seen_at FROM hosts ORDER BY host_id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list hosts: %w", err)
	}
	defer rows.Close()
	var out []leases.Host
	for rows.Next() {
		var (
			h    leases.Host
			fps  string
			seen sql.NullInt64
		)
		if err := rows.Scan(&h.ID, &fps, &seen); err != nil {
			return nil, fmt.Errorf("sqlite: list hosts: %w", err)
		}
		h.SeenAt = decTime(seen)
		if h.Fingerprints, err = decData(fps); err != nil {
			return nil, fmt.Errorf("sqlite: list hosts: host %q: %w", h.ID, err)
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list hosts: %w", err)
	}
	return out, nil
}
