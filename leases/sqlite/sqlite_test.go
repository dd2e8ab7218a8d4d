package sqlite

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) leases.Store {
		return open(t, filepath.Join(t.TempDir(), "leases.db"))
	})
}

// open opens the store at path or fails the test; the caller closes it.
func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(%q): %v", path, err)
	}
	return s
}

func closeStore(t *testing.T, s *Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.UTC)

func TestFileModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "credbroker")
	path := filepath.Join(dir, "leases.db")
	s := open(t, path)
	defer closeStore(t, s)
	// A write makes sure the -wal and -shm files exist.
	if err := s.CreateSession(t.Context(), leases.Session{ID: "s1", State: leases.SessionActive}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} {
		assertMode(t, d, fs.ModeDir|0o700)
	}
	assertMode(t, path, 0o600)
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("WAL mode should have created %s: %v", p, err)
			continue
		}
		assertMode(t, p, 0o600)
	}
}

func TestOpenTightensExistingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil { // in case of a strict umask
		t.Fatal(err)
	}
	s := open(t, path)
	defer closeStore(t, s)
	assertMode(t, path, 0o600)
}

func assertMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode(); got != want {
		t.Errorf("mode of %s = %v, want %v", path, got, want)
	}
}

func TestWALMode(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "leases.db"))
	defer closeStore(t, s)
	var mode string
	if err := s.db.QueryRowContext(t.Context(), "PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func TestOpenErrors(t *testing.T) {
	if _, err := Open(t.Context(), ""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
	// A directory where the file should be.
	if _, err := Open(t.Context(), t.TempDir()); err == nil {
		t.Error("Open(directory) succeeded")
	}
}

func TestPathNeedsNoEscaping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "we?ird #dir%20", "leases.db")
	s := open(t, path)
	defer closeStore(t, s)
	if err := s.CreateSession(t.Context(), leases.Session{ID: "s1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at the given path: %v", err)
	}
}

func TestReopenKeepsData(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "leases.db")
	sess := leases.Session{ID: "s1", Role: "deploy", UID: -1, CallerUID: 1000, Dir: "/run/s1",
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), State: leases.SessionActive}
	lease := leases.Lease{ID: "vault/token/acc", SessionID: "s1", Provider: "vault", Kind: "token",
		ExternalID: "acc", IssuedAt: t0, ExpiresAt: t0.Add(time.Hour), Renewable: true,
		State: leases.LeaseActive, Data: map[string]string{"path": "auth/token/create"}}
	intent := leases.Intent{ID: "i2", SessionID: "s1", Provider: "awssts", CreatedAt: t0,
		Data: map[string]string{"role": "r"}}
	inc := leases.Incident{Reason: "leak", DeclaredAt: t0, CallerUID: 0}

	s := open(t, path)
	for _, err := range []error{
		s.CreateSession(ctx, sess),
		s.RecordLeases(ctx, "", []leases.Lease{lease}),
		s.PutIntent(ctx, intent),
		s.SetIncident(ctx, inc),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	closeStore(t, s)

	// This store keeps times to the nanosecond and in UTC, so DeepEqual
	// holds (the shared suite compares more loosely).
	s = open(t, path)
	defer closeStore(t, s)
	gotSess, err := s.GetSession(ctx, "s1")
	if err != nil || !reflect.DeepEqual(gotSess, sess) {
		t.Errorf("session after reopen = %+v, %v; want %+v", gotSess, err, sess)
	}
	gotLease, err := s.GetLease(ctx, lease.ID)
	if err != nil || !reflect.DeepEqual(gotLease, lease) {
		t.Errorf("lease after reopen = %+v, %v; want %+v", gotLease, err, lease)
	}
	gotIntents, err := s.ListIntents(ctx)
	if err != nil || len(gotIntents) != 1 || !reflect.DeepEqual(gotIntents[0], intent) {
		t.Errorf("intents after reopen = %+v, %v; want [%+v]", gotIntents, err, intent)
	}
	gotInc, ok, err := s.GetIncident(ctx)
	if err != nil || !ok || !reflect.DeepEqual(gotInc, inc) {
		t.Errorf("incident after reopen = %+v, %v, %v; want %+v", gotInc, ok, err, inc)
	}
}

func TestTimeOutOfRange(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "leases.db"))
	defer closeStore(t, s)
	far := time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	err := s.CreateSession(t.Context(), leases.Session{ID: "s1", ExpiresAt: far})
	if err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("CreateSession with year 3000: error = %v, want out of range", err)
	}
}

// Two stores on one file stand for the daemon and a CLI process: their
// writes must wait for each other, never fail with SQLITE_BUSY.
func TestTwoHandlesOneFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	a, b := open(t, path), open(t, path)
	defer closeStore(t, b)
	defer closeStore(t, a)
	var wg sync.WaitGroup
	for i := range 20 {
		s := a
		if i%2 == 1 {
			s = b
		}
		wg.Go(func() {
			id := string(rune('a' + i))
			l := leases.Lease{ID: "p/k/" + id, SessionID: "s", IssuedAt: t0, State: leases.LeaseActive}
			if err := s.PutIntent(t.Context(), leases.Intent{ID: id, CreatedAt: t0}); err != nil {
				t.Error(err)
			}
			if err := s.RecordLeases(t.Context(), id, []leases.Lease{l}); err != nil {
				t.Error(err)
			}
			if _, err := s.ListLeases(t.Context(), ""); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	ls, err := a.ListLeases(t.Context(), "")
	if err != nil || len(ls) != 20 {
		t.Errorf("ListLeases = %d leases, %v; want 20", len(ls), err)
	}
}

func TestSchemaTooNewIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	s := open(t, path)
	if _, err := s.db.ExecContext(t.Context(),
		`INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)

	_, err := Open(t.Context(), path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer schema: error = %v, want ErrSchemaTooNew", err)
	}
	for _, want := range []string{path, "upgrade credbroker", "newer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
