package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrSchemaTooNew is returned (wrapped) by Open when the database was written
// by a newer credbroker whose schema this build does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this credbroker supports")

// migrateLockKey is the pg_advisory_xact_lock key every credbroker holds
// while it migrates ("credbrkr" in ASCII). Brokers starting together on an
// empty database queue on it, so the first creates the schema and the others
// find it done.
const migrateLockKey int64 = 0x6372656462726b72

// migrations are applied in order; migrations[i] takes the schema to version
// i+1. Never edit or reorder an entry that has shipped: append a new one.
var migrations = []string{
	// 1: initial schema. Ids sort bytewise (COLLATE "C"), as Go compares
	// strings, whatever the database's locale. Times are timestamptz
	// (microseconds), NULL for the zero time, which sorts first as in Go.
	// Data columns hold a JSON object of strings (JSON null for a nil map).
	// host_id is the broker host that owns a session ('' for a single
	// broker), for fleet mode.
	`CREATE TABLE sessions (
		id         text COLLATE "C" PRIMARY KEY,
		role       text NOT NULL,
		uid        bigint NOT NULL,
		caller_uid bigint NOT NULL,
		dir        text NOT NULL,
		created_at timestamptz,
		expires_at timestamptz,
		state      text NOT NULL,
		end_reason text NOT NULL,
		ended_at   timestamptz,
		host_id    text NOT NULL DEFAULT ''
	);
	CREATE INDEX sessions_by_created ON sessions (created_at NULLS FIRST, id);

	CREATE TABLE leases (
		id           text COLLATE "C" PRIMARY KEY,
		session_id   text COLLATE "C" NOT NULL,
		provider     text NOT NULL,
		kind         text NOT NULL,
		external_id  text NOT NULL,
		issued_at    timestamptz,
		expires_at   timestamptz,
		renewable    boolean NOT NULL,
		state        text NOT NULL,
		attempts     bigint NOT NULL,
		last_error   text NOT NULL,
		next_attempt timestamptz,
		data         jsonb NOT NULL
	);
	CREATE INDEX leases_by_issued ON leases (issued_at NULLS FIRST, id);
	CREATE INDEX leases_by_session ON leases (session_id, issued_at NULLS FIRST, id);
	CREATE INDEX leases_by_state ON leases (state);

	CREATE TABLE intents (
		id         text COLLATE "C" PRIMARY KEY,
		session_id text NOT NULL,
		provider   text NOT NULL,
		created_at timestamptz,
		data       jsonb NOT NULL
	);
	CREATE INDEX intents_by_created ON intents (created_at NULLS FIRST, id);

	CREATE TABLE incident (
		singleton   integer PRIMARY KEY CHECK (singleton = 1),
		reason      text NOT NULL,
		declared_at timestamptz,
		caller_uid  bigint NOT NULL
	);`,
	// 2: fleet mode. Each broker lists its own sessions (refresher,
	// reaper, reconciler) by host.
	`CREATE INDEX sessions_by_host ON sessions (host_id, state);`,
	// 3: the fleet's hosts. Each broker records the fingerprints of its
	// provider configs (non-secret digests) at start and on every loop
	// tick, for status --all-hosts and revoke --all's report.
	`CREATE TABLE hosts (
		host_id      text COLLATE "C" PRIMARY KEY,
		fingerprints jsonb NOT NULL,
		seen_at      timestamptz
	);`,
}

// migrate brings the database up to len(migs) in one transaction that holds
// the advisory lock, applying only the versions it lacks, and refuses a
// database newer than migs. DDL is transactional in PostgreSQL, so a failed
// migration leaves nothing behind.
func migrate(ctx context.Context, pool *pgxpool.Pool, migs []string) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, migrateLockKey); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var cur int
		if err := tx.QueryRow(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return fmt.Errorf("read version: %w", err)
		}
		if cur > len(migs) {
			return fmt.Errorf("schema version %d, this build knows up to %d (upgrade credbroker): %w",
				cur, len(migs), ErrSchemaTooNew)
		}
		for v := cur + 1; v <= len(migs); v++ {
			if _, err := tx.Exec(ctx, migs[v-1]); err != nil {
				return fmt.Errorf("apply version %d: %w", v, err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO schema_migrations (version) VALUES ($1)`, v); err != nil {
				return fmt.Errorf("record version %d: %w", v, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	return nil
}
