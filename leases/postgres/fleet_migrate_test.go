package postgres

import (
	"testing"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
)

// A database written before fleet mode (schema version 1) upgrades in
// place: its sessions keep their rows, with no host, and the host index
// appears.
func TestUpgradeFromVersion1(t *testing.T) {
	ctx := t.Context()
	db := pgtest.NewDB(t)
	raw := rawPool(t, db)
	if err := migrate(ctx, raw, migrations[:1]); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(ctx, `INSERT INTO sessions (id, role, uid, caller_uid, dir, state, end_reason)
		VALUES ('s-old', 'r', 1, 1, '/d', 'active', '')`); err != nil {
		t.Fatal(err)
	}
	s := open(t, db.DSN())
	defer closeStore(t, s)
	got, err := s.GetSession(ctx, "s-old")
	if err != nil || got.HostID != "" || got.State != leases.SessionActive {
		t.Errorf("session after upgrade: %+v, %v", got, err)
	}
	if !tableExists(t, raw, "sessions_by_host") {
		t.Error("no sessions_by_host index after the upgrade")
	}
}
