package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// ErrSchemaTooNew is returned (wrapped) by Open when the database was written
// by a newer credbroker whose schema this build does not know.
var ErrSchemaTooNew = errors.New("database schema is newer than this credbroker supports")

// migrations are applied in order; migrations[i] takes the schema to version
// i+1. Never edit or reorder an entry that has shipped: append a new one.
var migrations = []string{
	// 1: initial schema. Times are UTC unix nanoseconds, NULL for the zero
	// time; data columns hold a JSON object of strings.
	`CREATE TABLE sessions (
		id         TEXT PRIMARY KEY,
		role       TEXT NOT NULL,
		uid        INTEGER NOT NULL,
		caller_uid INTEGER NOT NULL,
		dir        TEXT NOT NULL,
		created_at INTEGER,
		expires_at INTEGER,
		state      TEXT NOT NULL,
		end_reason TEXT NOT NULL,
		ended_at   INTEGER
	) STRICT;
	CREATE INDEX sessions_by_created ON sessions (created_at, id);

	CREATE TABLE leases (
		id           TEXT PRIMARY KEY,
		session_id   TEXT NOT NULL,
		provider     TEXT NOT NULL,
		kind         TEXT NOT NULL,
		external_id  TEXT NOT NULL,
		issued_at    INTEGER,
		expires_at   INTEGER,
		renewable    INTEGER NOT NULL,
		state        TEXT NOT NULL,
		attempts     INTEGER NOT NULL,
		last_error   TEXT NOT NULL,
		next_attempt INTEGER,
		data         TEXT NOT NULL
	) STRICT;
	CREATE INDEX leases_by_issued ON leases (issued_at, id);
	CREATE INDEX leases_by_session ON leases (session_id, issued_at, id);
	CREATE INDEX leases_by_state ON leases (state);

	CREATE TABLE intents (
		id         TEXT PRIMARY KEY,
		session_id TEXT NOT NULL,
		provider   TEXT NOT NULL,
		created_at INTEGER,
		data       TEXT NOT NULL
	) STRICT;
	CREATE INDEX intents_by_created ON intents (created_at, id);

	CREATE TABLE incident (
		singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
		reason      TEXT NOT NULL,
		declared_at INTEGER,
		caller_uid  INTEGER NOT NULL
	) STRICT;`,
	// 2: fleet mode. host_id is the broker host that owns a session (''
	// for a single broker, and for sessions written before this version).
	`ALTER TABLE sessions ADD COLUMN host_id TEXT NOT NULL DEFAULT '';
	CREATE INDEX sessions_by_host ON sessions (host_id, state);`,
	// 3: the hosts sharing the store (one for a single broker): the
	// fingerprints of each one's provider configs (non-secret digests),
	// as in the PostgreSQL store.
	`CREATE TABLE hosts (
		host_id      TEXT PRIMARY KEY,
		fingerprints TEXT NOT NULL,
		seen_at      INTEGER
	) STRICT;`,
}

// migrate brings db up to len(migs) in one transaction, applying only the
// versions it lacks, and refuses a database newer than migs.
func migrate(ctx context.Context, db *sql.DB, migs []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()

	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("migrate: create schema_migrations: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx,
		`SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if cur > len(migs) {
		return fmt.Errorf("migrate: schema version %d, this build knows up to %d (upgrade credbroker): %w",
			cur, len(migs), ErrSchemaTooNew)
	}
	for v := cur + 1; v <= len(migs); v++ {
		if _, err := tx.ExecContext(ctx, migs[v-1]); err != nil {
			return fmt.Errorf("migrate: apply version %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx,
			`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`,
			v, time.Now().UTC().UnixNano()); err != nil {
			return fmt.Errorf("migrate: record version %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}
