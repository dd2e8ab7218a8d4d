package postgres

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/credbroker/credbroker/leases"
)

// The range timestamptz holds (4714-11-24 BC to 294276 AD).
var (
	minTime = time.Date(-4713, 11, 24, 0, 0, 0, 0, time.UTC)
	maxTime = time.Date(294276, 12, 31, 23, 59, 59, 999999999, time.UTC)
)

// encTime returns t for a timestamptz parameter, NULL for the zero time.
// PostgreSQL keeps microseconds: finer digits are truncated.
func encTime(t time.Time) (pgtype.Timestamptz, error) {
	if t.IsZero() {
		return pgtype.Timestamptz{}, nil
	}
	if t.Before(minTime) || t.After(maxTime) {
		return pgtype.Timestamptz{}, fmt.Errorf("time %s out of range", t.UTC().Format(time.RFC3339))
	}
	return pgtype.Timestamptz{Time: t, Valid: true}, nil
}

// encTimes encodes ts in order, stopping at the first error.
func encTimes(ts ...time.Time) ([]pgtype.Timestamptz, error) {
	out := make([]pgtype.Timestamptz, len(ts))
	for i, t := range ts {
		v, err := encTime(t)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

// decTime is the inverse of encTime, in UTC.
func decTime(v pgtype.Timestamptz) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return v.Time.UTC()
}

// encData returns a data map as JSON text for a jsonb parameter; a nil map
// is JSON null so it reads back as nil rather than as an empty map.
func encData(m map[string]string) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("encode data: %w", err)
	}
	return string(b), nil
}

// decData is the inverse of encData.
func decData(b []byte) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decode data: %w", err)
	}
	return m, nil
}

// notFound turns pgx.ErrNoRows into leases.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return leases.ErrNotFound
	}
	return err
}

// checkUpdated turns an UPDATE that matched no row into leases.ErrNotFound.
func checkUpdated(tag pgconn.CommandTag, err error) error {
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return leases.ErrNotFound
	}
	return nil
}
