// Package postgres is the shared leases.Store for fleet mode: many brokers
// record their sessions and leases in one PostgreSQL database, reached
// through a pgx connection pool.
package postgres

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sys/unix"

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
	// listen is the connection config of the dedicated LISTEN connection
	// (WatchIncident), which cannot come from the pool.
	listen *pgx.ConnConfig
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
	failFast(cfg.ConnConfig)
	s := &Store{target: redactedDSN(cfg.ConnConfig.Config), secrets: passwords(cfg.ConnConfig.Config), hostID: o.hostID,
		listen: cfg.ConnConfig.Copy()}
	// Named apart, so an operator sees each broker's watch in
	// pg_stat_activity.
	s.listen.RuntimeParams["application_name"] += " " + watchAppSuffix
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

// Connection timing. A broker must notice a database that went away within
// seconds, not the minutes TCP's defaults take: minting fails closed (with a
// clear error) instead of hanging, and the incident watch reconnects.
const (
	// defaultConnectTimeout applies when the DSN sets no connect_timeout.
	defaultConnectTimeout = 5 * time.Second
	// keepAliveIdle, keepAliveInterval and keepAliveCount find a silent
	// peer on an idle connection after about 20s.
	keepAliveIdle     = 10 * time.Second
	keepAliveInterval = 5 * time.Second
	keepAliveCount    = 2
	// userTimeout drops a connection whose sent data stays unacknowledged
	// that long (TCP_USER_TIMEOUT), so a query on a cut connection fails
	// instead of waiting for TCP's retransmissions to give up.
	userTimeout = 20 * time.Second
)

// failFast sets the connect timeout (unless the DSN has one) and a dialer
// with short keepalives and TCP_USER_TIMEOUT on TCP connections.
func failFast(cc *pgx.ConnConfig) {
	if cc.ConnectTimeout == 0 {
		cc.ConnectTimeout = defaultConnectTimeout
	}
	d := &net.Dialer{
		Timeout: cc.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: keepAliveIdle, Interval: keepAliveInterval, Count: keepAliveCount,
		},
		Control: func(network, _ string, c syscall.RawConn) error {
			if network != "tcp" && network != "tcp4" && network != "tcp6" {
				return nil
			}
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(userTimeout.Milliseconds()))
			})
			if err != nil {
				return err
			}
			return serr
		},
	}
	cc.DialFunc = d.DialContext
}

// opTimeout bounds every Store call whose context has no earlier deadline:
// a database that stopped answering makes calls fail (minting fails
// closed, revocation carries on without the store) instead of hanging.
const opTimeout = 10 * time.Second

// bound returns ctx with opTimeout applied, unless it ends sooner.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if d, ok := ctx.Deadline(); ok && time.Until(d) <= opTimeout {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}
