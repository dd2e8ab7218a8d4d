package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.Locker = (*Store)(nil)

// WithLock implements leases.Locker with a transaction-scoped advisory
// lock (pg_advisory_xact_lock on the name's hash): every broker of the
// fleet waits for it, and PostgreSQL releases it at commit, at rollback,
// or when the holder's connection dies. fn runs outside the transaction
// (its store calls use other connections of the pool); the transaction
// only holds the lock.
func (s *Store) WithLock(ctx context.Context, name string, fn func(ctx context.Context) error) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return s.errorf("postgres: lock %s: %w", name, err)
	}
	defer conn.Release()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return s.errorf("postgres: lock %s: %w", name, err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, "credbroker:"+name); err != nil {
		return s.errorf("postgres: lock %s: %w", name, err)
	}
	return fn(ctx)
}
