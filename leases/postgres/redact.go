package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/leases"
)

// errBadDSN replaces the parser's error, which may quote the DSN.
var errBadDSN = errors.New("postgres: open: cannot parse the DSN (not shown, as it may hold a password); " +
	"use postgres://user:password@host:port/database with the password percent-encoded, or key=value pairs")

// mask replaces a password in error texts.
const mask = "xxxxx"

// redactedDSN is cfg's address as a URL without a password, to name the
// database in errors and logs. It is for people to read, not to parse.
func redactedDSN(cfg pgconn.Config) string {
	port := strconv.Itoa(int(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") { // a Unix socket directory
		return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%s", cfg.User, cfg.Database, cfg.Host, port)
	}
	return fmt.Sprintf("postgres://%s@%s/%s", cfg.User, net.JoinHostPort(cfg.Host, port), cfg.Database)
}

// passwords lists cfg's password (from the DSN, $PGPASSWORD or a passfile)
// in each spelling a DSN may have used.
func passwords(cfg pgconn.Config) []string {
	pw := cfg.Password
	if pw == "" {
		return nil
	}
	userinfo := strings.TrimPrefix(url.UserPassword("", pw).String(), ":")
	return []string{pw, url.QueryEscape(pw), url.PathEscape(pw), userinfo}
}

// redactedError carries the text of an error whose chain held a password,
// with the password masked. It unwraps only to the parts of the chain that
// hold none: sentinels callers branch on and the server's own error.
type redactedError struct {
	msg    string
	causes []error
}

func (e *redactedError) Error() string   { return e.msg }
func (e *redactedError) Unwrap() []error { return e.causes }

// sentinels survive redaction, so errors.Is still works on them.
var sentinels = []error{context.Canceled, context.DeadlineExceeded, leases.ErrNotFound, ErrSchemaTooNew}

// redact returns err unchanged when neither its text nor its chain can
// reveal a password. A *pgconn.ConnectError can (its Config field holds the
// password, for anyone who errors.As it or prints it with %#v), and so can a
// text that contains one of secrets: those become a redactedError.
func redact(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	for _, pw := range secrets {
		clean = strings.ReplaceAll(clean, pw, mask)
	}
	var ce *pgconn.ConnectError
	if clean == msg && !errors.As(err, &ce) {
		return err
	}
	r := &redactedError{msg: clean}
	for _, s := range sentinels {
		if errors.Is(err, s) {
			r.causes = append(r.causes, s)
		}
	}
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) {
		r.causes = append(r.causes, pe)
	}
	return r
}
