package postgres

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/credbroker/credbroker/leases/postgres/pgtest"
)

// wrongPassword is a password no test role has: special characters make it
// appear differently in a URL (percent-encoded) than in key=value form.
const wrongPassword = "Wr0ng p@ss/w%rd:Secr3t"

// The password of a DSN never reaches an error, whatever goes wrong and
// however the DSN spells it.
func TestPasswordNeverInErrors(t *testing.T) {
	db := pgtest.NewDB(t)
	url := db.DSNWithPassword(wrongPassword)
	kv := fmt.Sprintf("host=%s port=%d dbname=%s user=%s password='%s' sslmode=disable",
		db.Host, db.Port, db.Name, db.User, strings.ReplaceAll(wrongPassword, "'", `\'`))
	closedPort := fmt.Sprintf("postgres://%s:%s@127.0.0.1:1/%s?connect_timeout=5", db.User, "S3cretNoServer", db.Name)
	cases := []struct {
		name, dsn, secret string
		want              []string
	}{
		{"wrong password in a URL", url, wrongPassword, []string{"password authentication failed", db.User, db.Name}},
		{"wrong password as key=value", kv, wrongPassword, []string{"password authentication failed"}},
		{"no server", closedPort, "S3cretNoServer", []string{"127.0.0.1:1", db.Name}},
		{"malformed URL", "postgres://u:Pa/ss@h:x/db", "Pa/ss", []string{"cannot parse the DSN"}},
		{"malformed key=value", "host=h password=S3cretKV port=notanumber", "S3cretKV", []string{"cannot parse the DSN"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Open(t.Context(), tc.dsn)
			if err == nil {
				closeStore(t, s)
				t.Fatal("Open succeeded")
			}
			assertNoSecret(t, err, tc.secret)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// assertNoSecret fails if secret, in any spelling, is in err's text, its
// %#v form, or anything errors.As can reach.
func assertNoSecret(t *testing.T, err error, secret string) {
	t.Helper()
	spellings := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
	for _, text := range []string{err.Error(), fmt.Sprintf("%+v", err), fmt.Sprintf("%#v", err)} {
		for _, sp := range spellings {
			if strings.Contains(text, sp) {
				t.Errorf("error holds the password (%q): %s", sp, text)
			}
		}
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) {
		t.Errorf("error chain holds a *pgconn.ConnectError, whose Config has the password")
	}
	var pe *pgconn.ParseConfigError
	if errors.As(err, &pe) {
		t.Errorf("error chain holds a *pgconn.ParseConfigError, whose ConnString has the password")
	}
}

// A wrong password is still recognisable to callers: the server's error
// (28P01, invalid_password) stays in the chain.
func TestWrongPasswordKeepsServerError(t *testing.T) {
	db := pgtest.NewDB(t)
	_, err := Open(t.Context(), db.DSNWithPassword(wrongPassword))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != "28P01" {
		t.Errorf("Open with a wrong password: error = %v, want a *pgconn.PgError with code 28P01", err)
	}
}

func TestRedactedDSN(t *testing.T) {
	cases := []struct{ dsn, want string }{
		{"postgres://broker:pw@db.example.com:6432/leases", "postgres://broker@db.example.com:6432/leases"},
		{"host=/run/postgresql user=broker dbname=leases password=pw", "postgres://broker@/leases?host=/run/postgresql&port=5432"},
		{"postgres://broker:pw@[::1]/leases", "postgres://broker@[::1]:5432/leases"},
	}
	for _, tc := range cases {
		cfg, err := pgconn.ParseConfig(tc.dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := redactedDSN(*cfg); got != tc.want {
			t.Errorf("redactedDSN(%q) = %q, want %q", tc.dsn, got, tc.want)
		}
	}
}
