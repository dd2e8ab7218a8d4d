package broker_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/syncbuf"
)

// reloadBase is the config the broker of TestReload starts with. {{DIR}}
// is a temp dir.
const reloadBase = `
broker:
  socket: {{DIR}}/run/broker.sock
  runtime_dir: {{DIR}}/run
  state_dir: {{DIR}}/state
  admin_uids: [4242]
store:
  path: {{DIR}}/state/leases.db
providers:
  vault:
    address: http://127.0.0.1:8200
    token_role: credbroker-session
  aws:
    region: us-east-1
roles:
  ro:
    ttl: 10m
    max_ttl: 1h
    vault:
      policies: [agent-readonly]
  s3:
    ttl: 10m
    max_ttl: 1h
    aws:
      role_arn: arn:aws:iam::000000000000:role/agent-s3
  gone:
    ttl: 10m
    max_ttl: 1h
    vault:
      policies: [agent-readonly]
`

// reloadFixture is a broker (no store, no provider: reloads and refused
// starts need neither) started from reloadBase in a temp dir.
type reloadFixture struct {
	b                *broker.Broker
	cfg              *configs.Config // the config it started with
	dir, path, audit string
	logs             *syncbuf.Buffer
}

func newReloadFixture(t *testing.T, withLoader bool) *reloadFixture {
	t.Helper()
	f := &reloadFixture{dir: t.TempDir(), logs: &syncbuf.Buffer{}}
	f.path, f.audit = filepath.Join(f.dir, "config.yaml"), filepath.Join(f.dir, "audit.log")
	f.write(t, func(s string) string { return s })
	cfg, err := configs.Load(f.path)
	if err != nil {
		t.Fatalf("the base config does not load: %v", err)
	}
	audit, err := broker.OpenAudit(f.audit)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { audit.Close() })
	o := broker.Options{Config: cfg, Audit: audit, Logger: slog.New(slog.NewJSONHandler(f.logs, nil))}
	if withLoader {
		o.LoadConfig = f.load
	}
	f.b, f.cfg = broker.New(o), cfg
	return f
}

// write writes reloadBase, edited, as the config file.
func (f *reloadFixture) write(t *testing.T, edit func(string) string) {
	t.Helper()
	if err := os.WriteFile(f.path, []byte(strings.ReplaceAll(edit(reloadBase), "{{DIR}}", f.dir)), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *reloadFixture) load() (*configs.Config, error) { return configs.Load(f.path) }

// TestReload reloads a running broker's config with real files through
// configs.Load: what may change live is applied, anything else is rejected
// with the running config kept, and every reload is audited.
func TestReload(t *testing.T) {
	cases := []struct {
		name string
		edit func(string) string
		// wantErr: substrings of the rejection; none means applied.
		wantErr []string
		want    broker.ReloadResult
	}{
		{
			name: "roles added, changed and removed, admin_uids",
			edit: func(s string) string {
				s = strings.Replace(s, "admin_uids: [4242]", "admin_uids: [4242, 4343]", 1)
				s = strings.Replace(s, "  gone:\n", "  fresh:\n", 1)
				return strings.Replace(s, "  ro:\n    ttl: 10m", "  ro:\n    ttl: 20m", 1)
			},
			want: broker.ReloadResult{Added: []string{"fresh"}, Changed: []string{"ro"}, Removed: []string{"gone"}, AdminUIDs: true},
		},
		{
			name: "an aws block dropped from a role",
			edit: func(s string) string {
				return strings.Replace(s, "    aws:\n      role_arn: arn:aws:iam::000000000000:role/agent-s3",
					"    vault:\n      policies: [agent-readonly]", 1)
			},
			want: broker.ReloadResult{Changed: []string{"s3"}},
		},
		{
			name:    "invalid config",
			edit:    func(s string) string { return strings.Replace(s, "max_ttl: 1h", "max_ttl: 5m", 1) },
			wantErr: []string{"max_ttl"},
		},
		{
			name:    "unknown field",
			edit:    func(s string) string { return strings.Replace(s, "  ro:\n", "  ro:\n    polices: [x]\n", 1) },
			wantErr: []string{"polices"},
		},
		{
			name: "restart-only keys",
			edit: func(s string) string {
				s = strings.Replace(s, "socket: {{DIR}}/run/broker.sock", "socket: {{DIR}}/run/other.sock", 1)
				s = strings.Replace(s, "region: us-east-1", "region: eu-west-1", 1)
				return strings.Replace(s, "path: {{DIR}}/state/leases.db", "path: {{DIR}}/state/other.db", 1)
			},
			wantErr: []string{"broker.socket", "store.path", "providers.aws.region", "restart the daemon to apply"},
		},
		{
			name: "new role with an aws block",
			edit: func(s string) string {
				return strings.Replace(s, "  gone:\n", "  s3b:\n    aws:\n      role_arn: arn:aws:iam::000000000000:role/b\n  gone:\n", 1)
			},
			wantErr: []string{"roles.s3b.aws", "restart the daemon to apply"},
		},
		{
			name: "changed aws block",
			edit: func(s string) string {
				return strings.Replace(s, "role/agent-s3", "role/agent-s3\n      policy_arns: [arn:aws:iam::aws:policy/ReadOnlyAccess]", 1)
			},
			wantErr: []string{"roles.s3.aws"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newReloadFixture(t, false)
			b, cfg := f.b, f.cfg
			f.write(t, tc.edit)
			res, err := b.Reload(f.load)
			evs := reloadEvents(t, f.audit)
			if len(evs) != 1 {
				t.Fatalf("audit log has %d config.reload records, want 1: %+v", len(evs), evs)
			}
			if len(tc.wantErr) > 0 {
				if !errors.Is(err, broker.ErrReloadRejected) {
					t.Fatalf("reload: err = %v, want ErrReloadRejected", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) || !strings.Contains(evs[0].Error, w) {
						t.Errorf("error %q / audited %q does not name %q", err, evs[0].Error, w)
					}
				}
				t.Logf("rejected as it should be: %v", err)
				if b.Config() != cfg {
					t.Error("the running config was replaced by a rejected one")
				}
				if !strings.HasPrefix(evs[0].Reason, "rejected") || !strings.Contains(f.logs.String(), "config reload rejected") {
					t.Errorf("audit reason %q, logs %s: want rejected, logged", evs[0].Reason, f.logs)
				}
				return
			}
			if err != nil {
				t.Fatalf("reload: %v", err)
			}
			if !equalResult(res, tc.want) {
				t.Errorf("reload result = %+v, want %+v", res, tc.want)
			}
			next := b.Config()
			if next == cfg || next.Path != f.path {
				t.Fatalf("the running config was not replaced (path %q)", next.Path)
			}
			if evs[0].Reason != "applied: "+tc.want.String() || evs[0].Error != "" {
				t.Errorf("audited %+v, want reason %q", evs[0], "applied: "+tc.want.String())
			}
			for _, r := range tc.want.Removed {
				if _, ok := next.Roles[r]; ok {
					t.Errorf("removed role %s still in the running config", r)
				}
			}
			for _, r := range tc.want.Added {
				if _, ok := next.Roles[r]; !ok {
					t.Errorf("added role %s missing from the running config", r)
				}
			}
		})
	}
}

// TestReloadRemovedRoleRefused: after a reload drops a role, a start of it
// is refused as an unknown role, naming the roles left.
func TestReloadRemovedRoleRefused(t *testing.T) {
	f := newReloadFixture(t, false)
	b := f.b
	f.write(t, func(s string) string { return strings.Replace(s, "  gone:\n", "  fresh:\n", 1) })
	if _, err := b.Reload(f.load); err != nil {
		t.Fatal(err)
	}
	_, err := b.StartSession(t.Context(), broker.Caller{UID: os.Geteuid()}, broker.StartRequest{Role: "gone"})
	if !errors.Is(err, broker.ErrUnknownRole) || !strings.Contains(err.Error(), "fresh, ro, s3") {
		t.Fatalf("start of a removed role: err = %v, want ErrUnknownRole naming fresh, ro, s3", err)
	}
}

// TestReloadConcurrent runs reloads while other goroutines read the
// running config (the race detector checks the swap).
func TestReloadConcurrent(t *testing.T) {
	f := newReloadFixture(t, false)
	b := f.b
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				_, err := b.StartSession(t.Context(), broker.Caller{UID: os.Geteuid()}, broker.StartRequest{Role: "nope"})
				if !errors.Is(err, broker.ErrUnknownRole) {
					t.Errorf("start of an unknown role: %v", err)
					return
				}
			}
		})
	}
	applied := 0
	for range 20 {
		if _, err := b.Reload(f.load); err == nil {
			applied++
		}
	}
	wg.Wait()
	if applied != 20 {
		t.Errorf("%d of 20 reloads of an unchanged file applied", applied)
	}
}

// reloadEvents reads the config.reload records of the audit log at path.
func reloadEvents(t *testing.T, path string) []broker.Event {
	return auditOf(t, path, broker.EvConfigReload)
}

// auditOf reads the records of kind from the audit log at path.
func auditOf(t *testing.T, path, kind string) []broker.Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []broker.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev broker.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if ev.Event == kind {
			evs = append(evs, ev)
		}
	}
	return evs
}

func equalResult(a, b broker.ReloadResult) bool {
	return slices.Equal(a.Added, b.Added) && slices.Equal(a.Changed, b.Changed) &&
		slices.Equal(a.Removed, b.Removed) && a.AdminUIDs == b.AdminUIDs
}

// TestRequestReload: `credbroker config reload` is for admins; a refusal
// is audited, and a broker with no config file to reload says so.
func TestRequestReload(t *testing.T) {
	f := newReloadFixture(t, true)
	b, cfg, auditPath := f.b, f.cfg, f.audit
	f.write(t, func(s string) string { return strings.Replace(s, "  gone:\n", "  fresh:\n", 1) })

	if _, err := b.RequestReload(broker.Caller{UID: 4343, PID: 1}); !errors.Is(err, broker.ErrForbidden) {
		t.Fatalf("reload by a non-admin: err = %v, want ErrForbidden", err)
	}
	if b.Config() != cfg || len(reloadEvents(t, auditPath)) != 0 {
		t.Fatal("a non-admin's reload request reloaded")
	}
	if ref := auditOf(t, auditPath, "access.refused"); len(ref) != 1 || ref[0].CallerUID == nil || *ref[0].CallerUID != 4343 {
		t.Errorf("the non-admin's reload request is not audited as refused: %+v", ref)
	}
	res, err := b.RequestReload(broker.Caller{UID: 4242, PID: 1}) // broker.admin_uids
	if err != nil || !slices.Equal(res.Added, []string{"fresh"}) {
		t.Fatalf("reload by an admin: %+v, %v", res, err)
	}
	evs := reloadEvents(t, auditPath)
	if len(evs) != 1 || evs[0].CallerUID == nil || *evs[0].CallerUID != 4242 {
		t.Fatalf("the admin's reload is not audited with its caller: %+v", evs)
	}
	none := newReloadFixture(t, false)
	if _, err := none.b.RequestReload(broker.Caller{UID: 0}); !errors.Is(err, broker.ErrBadRequest) {
		t.Fatalf("reload of a broker without LoadConfig: err = %v, want ErrBadRequest", err)
	}
}
