package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/leases"
)

var _ leases.IncidentWatcher = (*Store)(nil)

// watchAppSuffix is appended to the application_name of the LISTEN
// connection.
const watchAppSuffix = "(incident watch)"

// Timing of the incident watch.
const (
	// watchIdle is how long the LISTEN connection waits for a notice
	// before it checks that the server still answers: a connection cut
	// without a reset (a partition) is noticed within watchIdle +
	// watchCheck, and the watch reconnects.
	watchIdle  = 2 * time.Second
	watchCheck = 3 * time.Second
	// watchRetryMax caps the wait between reconnection attempts, so a
	// broker that was cut off is back within about that long after the
	// database is reachable again.
	watchRetryMax = time.Second
)

// WatchIncident keeps a dedicated connection (not from the pool) that
// LISTENs on the incident channel. After each (re)connection it LISTENs
// first and then reads the lock, so an incident set in between is not
// missed; after each notice it reads the lock again. See
// leases.IncidentWatcher for the contract.
func (s *Store) WatchIncident(ctx context.Context, declared func(leases.Incident), lost func(error)) error {
	retry := 50 * time.Millisecond
	for {
		listened, err := s.watchConn(ctx, declared)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if lost != nil {
			lost(s.errorf("postgres: incident watch on %s: %w", s.target, err))
		}
		if listened {
			retry = 50 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
		retry = min(2*retry, watchRetryMax)
	}
}

// watchConn runs one LISTEN connection until it fails; listened reports
// whether it got as far as listening.
func (s *Store) watchConn(ctx context.Context, declared func(leases.Incident)) (listened bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, s.listen.Copy())
	if err != nil {
		return false, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+incidentChannel); err != nil {
		return false, err
	}
	for {
		if err := reportIncident(ctx, conn, declared); err != nil {
			return true, err
		}
		if err := waitNotice(ctx, conn); err != nil {
			return true, err
		}
	}
}

// waitNotice returns once a notice arrives, checking the connection every
// watchIdle while none does.
func waitNotice(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, watchIdle)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil || ctx.Err() != nil {
			return err
		}
		if !pgconn.Timeout(err) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, watchCheck)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}

func reportIncident(ctx context.Context, conn *pgx.Conn, declared func(leases.Incident)) error {
	rctx, cancel := context.WithTimeout(ctx, watchCheck)
	defer cancel()
	in, ok, err := readIncident(rctx, conn)
	if err != nil {
		return err
	}
	if ok {
		declared(in)
	}
	return nil
}
