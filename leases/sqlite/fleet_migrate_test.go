package sqlite

import (
	"path/filepath"
	"testing"

	"github.com/credbroker/credbroker/leases"
)

// A file written before fleet mode (schema version 1) upgrades in place:
// its sessions keep their rows, with no host.
func TestUpgradeFromVersion1(t *testing.T) {
	ctx := t.Context()
	path := filepath.Join(t.TempDir(), "leases.db")
	raw := rawDB(t, path)
	if err := migrate(ctx, raw, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.ExecContext(ctx, `INSERT INTO sessions (id, role, uid, caller_uid, dir, state, end_reason)
		VALUES ('s-old', 'r', 1, 1, '/d', 'active', '')`); err != nil {
		t.Fatal(err)
	}
	if err := raw.Close(); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	defer closeStore(t, s)
	got, err := s.GetSession(ctx, "s-old")
	if err != nil || got.HostID != "" || got.State != leases.SessionActive {
		t.Errorf("session after upgrade: %+v, %v", got, err)
	}
	ss, err := s.ListSessions(ctx, leases.SessionFilter{HostID: "x"})
	if err != nil || len(ss) != 0 {
		t.Errorf("sessions of host x after upgrade: %v, %v", ss, err)
	}
}
