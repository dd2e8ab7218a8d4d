// Package postgres is the shared leases.Store for fleet mode: many brokers
// record their sessions and leases in one PostgreSQL database, reached
// through a pgx connection pool.
package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.Store = (*Store)(nil)

// Store is a leases.Store backed by a PostgreSQL database. It is safe for
// concurrent use, by goroutines and by brokers on other hosts alike.
type Store struct {
	pool *pgxpool.Pool
	// target names the database in errors: the DSN without its password.
	target string
	// secrets are the passwords that must never reach an error's text.
	secrets []string
	hostID  string
}

// Option configures Open.
type Option func(*options)

type options struct {
	hostID string
}

// WithHostID stamps every session this store creates with id, the broker
// host that owns it. Without it host_id is left empty, as for a single
// broker.
func WithHostID(id string) Option {
	return func(o *options) { o.hostID = id }
}

// Open connects to the database named by dsn (a postgres:// URL or
// key=value pairs, as libpq takes them) and brings its schema up to date.
// Several brokers may call Open on the same database at once: migrations
// run under an advisory lock, so each is applied exactly once. The
// password is never part of an error Open or the Store returns.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// The parser's message may quote a piece of a malformed DSN, and
		// so of its password: say only what to check.
		return nil, errBadDSN
	}
	if _, ok := cfg.ConnConfig.RuntimeParams["application_name"]; !ok {
		cfg.ConnConfig.RuntimeParams["application_name"] = "credbroker"
	}
	s := &Store{target: redactedDSN(cfg.ConnConfig.Config), secrets: passwords(cfg.ConnConfig.Config), hostID: o.hostID}
	if s.pool, err = pgxpool.NewWithConfig(ctx, cfg); err != nil {
		return nil, s.errorf("postgres: open %s: %w", s.target, err)
	}
	if err := migrate(ctx, s.pool, migrations); err != nil {
		s.pool.Close()
		return nil, s.errorf("postgres: open %s: %w", s.target, err)
	}
	return s, nil
}

// Close closes every connection; calls after it fail.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// errorf is fmt.Errorf with every error argument passed through redact.
func (s *Store) errorf(format string, args ...any) error {
	for i, a := range args {
		if err, ok := a.(error); ok {
			args[i] = redact(err, s.secrets)
		}
	}
	return fmt.Errorf(format, args...)
}

// String names the database without its password.
func (s *Store) String() string { return s.target }
