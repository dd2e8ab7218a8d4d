// Package sqlite is the embedded leases.Store: one SQLite file in WAL mode,
// written through the pure-Go modernc.org/sqlite driver (no cgo).
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"github.com/credbroker/credbroker/leases"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

var _ leases.Store = (*Store)(nil)

// Store is a leases.Store backed by one SQLite file. It is safe for
// concurrent use.
type Store struct {
	db   *sql.DB
	path string

	watchMu  sync.Mutex
	watchers map[chan struct{}]bool // WatchIncident calls, woken by SetIncident
}

// busyTimeoutMS is how long a connection waits for another process's write
// lock before failing with SQLITE_BUSY.
const busyTimeoutMS = "5000"

// Open opens (creating if needed) the store at path and brings its schema up
// to date. The parent directory is created 0700 and the files are 0600.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("sqlite: open: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: create directory: %w", abs, err)
	}
	// Create the file ourselves so it is never readable by others, not even
	// for the moment between SQLite creating it and the chmod below.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}

	db, err := sql.Open("sqlite", dsn(abs))
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", abs, err)
	}
	// One connection serialises every statement in this process, so writers
	// never race each other into SQLITE_BUSY; busy_timeout covers other
	// processes (such as a CLI reading status).
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)

	s := &Store{db: db, path: abs}
	if err := s.init(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) init(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	if err := migrate(ctx, s.db, migrations); err != nil {
		return fmt.Errorf("sqlite: open %s: %w", s.path, err)
	}
	for _, p := range []string{s.path, s.path + "-wal", s.path + "-shm"} {
		if err := os.Chmod(p, 0o600); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("sqlite: open %s: %w", s.path, err)
		}
	}
	return nil
}

// dsn builds a file: URI so that any byte in path ('?', '#', '%') is escaped
// rather than read as URI syntax.
func dsn(abs string) string {
	q := url.Values{}
	q.Set("_busy_timeout", busyTimeoutMS)
	q.Set("_journal_mode", "WAL")
	// FULL syncs the WAL on every commit: a recorded lease must survive a
	// power cut, or the broker would forget a credential it has to revoke.
	q.Set("_synchronous", "FULL")
	// BEGIN IMMEDIATE takes the write lock up front, so a transaction never
	// fails half way when another process wrote since it started reading.
	q.Set("_txlock", "immediate")
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: q.Encode()}
	return u.String()
}

// Close releases the database.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("sqlite: close %s: %w", s.path, err)
	}
	return nil
}

// inTx runs fn in a transaction, committing if it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}
