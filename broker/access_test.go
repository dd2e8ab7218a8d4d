package broker

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/configs"
)

// TestMayStart: who may start a role, by uid, primary or supplementary
// group (name or gid), admin status; an unrestricted role is open.
func TestMayStart(t *testing.T) {
	cfg := &configs.Config{Broker: configs.Broker{AdminUIDs: []int{7000}}}
	b := New(Options{Config: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	open := configs.Role{Name: "open"}
	byUID := configs.Role{Name: "ci", AllowedUIDs: []int{4242}}
	byGroup := configs.Role{Name: "ops", AllowedGroups: []string{"root", "50"}}
	cases := []struct {
		name   string
		caller Caller
		role   configs.Role
		ok     bool
	}{
		{"open role, anyone", Caller{UID: 1234}, open, true},
		{"listed uid", Caller{UID: 4242}, byUID, true},
		{"unlisted uid", Caller{UID: 4243, GIDs: []int{4243}}, byUID, false},
		{"root", Caller{UID: 0}, byUID, true},
		{"daemon uid", Caller{UID: daemonUID}, byGroup, true},
		{"admin_uids", Caller{UID: 7000}, byUID, true},
		{"group by name, primary", Caller{UID: 1234, GIDs: []int{0}}, byGroup, true},
		{"group by gid, supplementary", Caller{UID: 1234, GIDs: []int{1234, 50}}, byGroup, true},
		{"no listed group", Caller{UID: 1234, GIDs: []int{1234, 51}}, byGroup, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := b.mayStart(cfg, tc.caller, tc.role)
			if tc.ok != (err == nil) {
				t.Fatalf("mayStart = %v, want allowed %v", err, tc.ok)
			}
			if err != nil && (!errors.Is(err, ErrForbidden) || !strings.Contains(err.Error(), "roles."+tc.role.Name+".allowed_")) {
				t.Fatalf("refusal %q does not wrap ErrForbidden or name the config key", err)
			}
		})
	}
}
