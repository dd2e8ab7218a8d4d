package main

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// Paths of the seeded Vault secrets the reload test reads.
const (
	readonlySecret = "secret/data/agent/readonly/config"
	devSecret      = "secret/data/agent/dev/config"
)

// TestE2EReloadSIGHUP edits the config of a running daemon (real Vault)
// and sends SIGHUP, as `systemctl reload` does: a changed role applies to
// sessions started after it and an added role starts, while a session
// that was live keeps its grant and still ends and is revoked; a broken
// config, or one changing a key that needs a restart, leaves the daemon
// serving with the config it had, each reload audited; a removed role is
// refused to new sessions while its live session runs on until it ends.
// systemd hears RELOADING=1 (with MONOTONIC_USEC) and READY=1 each time.
func TestE2EReloadSIGHUP(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	nsock, msgs := notifySocket(t, e.dir)
	d := e.serve(t, "NOTIFY_SOCKET="+nsock)
	nextNotify(t, msgs, "READY=1", 30*time.Second)
	orig := readConfig(t, e.config)

	live := e.startJSON(t, "--role", "agent-readonly")
	liveTok := e.sessionToken(t, live.Dir)
	e.requireDenied(t, liveTok, devSecret)
	if r := e.cli(t, "session", "start", "--role", "agent-ops"); r.code == 0 || !strings.Contains(r.stderr, "unknown role") {
		t.Fatalf("agent-ops before the reload: want unknown role: %s", r)
	}

	// agent-readonly now gets agent-dev's policy and secret; agent-ops is new.
	edited := strings.Replace(orig, "      policies: [agent-readonly]\n      secrets:\n        - name: config\n          path: "+readonlySecret,
		"      policies: [agent-dev]\n      secrets:\n        - name: config\n          path: "+devSecret, 1)
	edited += "  agent-ops:\n    ttl: 10m\n    max_ttl: 1h\n    vault:\n      policies: [agent-readonly]\n"
	if strings.Count(edited, "policies: [agent-dev]") != 2 {
		t.Fatal("the test's edit of agent-readonly matched nothing in the config")
	}
	ev := e.reload(t, d, msgs, edited)
	if ev.Reason != "applied: roles added: agent-ops; roles changed: agent-readonly" || ev.Error != "" {
		t.Fatalf("reload audited as %+v", ev)
	}
	fresh := e.startJSON(t, "--role", "agent-readonly")
	freshTok := e.sessionToken(t, fresh.Dir)
	e.requireRead(t, freshTok, devSecret, "db_host", "db.internal")
	e.requireTokenValid(t, liveTok)
	e.requireRead(t, liveTok, readonlySecret, "region", "eu-west-1")
	e.requireDenied(t, liveTok, devSecret)
	ops := e.startJSON(t, "--role", "agent-ops")
	opsTok := e.sessionToken(t, ops.Dir)
	type started struct{ id, tok string }
	ended := []started{{live.ID, liveTok}, {fresh.ID, freshTok}, {ops.ID, opsTok}}

	// Rejected: invalid, then a restart-only key. The daemon serves on.
	for _, bad := range []struct{ edit, want string }{
		{strings.Replace(edited, "    max_ttl: 1h\n    vault:\n      policies: [agent-readonly]\n", "    max_ttl: 1m\n    vault:\n      policies: [agent-readonly]\n", 1), "roles.agent-ops.max_ttl"},
		{strings.Replace(edited, "refresh_interval: 1s", "refresh_interval: 2s", 1), "broker.refresh_interval"},
	} {
		if bad.edit == edited {
			t.Fatalf("the test's edit for %s matched nothing", bad.want)
		}
		ev := e.reload(t, d, msgs, bad.edit)
		if !strings.HasPrefix(ev.Reason, "rejected") || !strings.Contains(ev.Error, bad.want) {
			t.Fatalf("reload with a bad %s audited as %+v", bad.want, ev)
		}
		d.waitStderr(t, bad.want, 10*time.Second)
		// The CLI reads the file too: put the good one back, with no SIGHUP.
		if err := os.WriteFile(e.config, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		si := e.startJSON(t, "--role", "agent-readonly")
		tok := e.sessionToken(t, si.Dir)
		e.requireRead(t, tok, devSecret, "db_host", "db.internal")
		ended = append(ended, started{si.ID, tok})
		// agent-ops's max_ttl is still 1h, not the rejected 1m.
		long := e.startJSON(t, "--role", "agent-ops", "--ttl", "30m")
		ended = append(ended, started{long.ID, e.sessionToken(t, long.Dir)})
	}

	// agent-ops removed: refused to new sessions, its live one runs on.
	ev = e.reload(t, d, msgs, strings.Replace(edited, "  agent-ops:\n", "  agent-ops-renamed:\n", 1))
	if ev.Reason != "applied: roles added: agent-ops-renamed; roles removed: agent-ops" {
		t.Fatalf("reload audited as %+v", ev)
	}
	if r := e.cli(t, "session", "start", "--role", "agent-ops"); r.code == 0 || !strings.Contains(r.stderr, "unknown role") {
		t.Fatalf("a removed role started: %s", r)
	}
	e.requireTokenValid(t, opsTok)
	if si := e.show(t, ops.ID); si.State != "active" {
		t.Fatalf("the removed role's live session is %s, want active", si.State)
	}

	// The same through the API: `credbroker config reload` (root, an admin).
	viaCLI := strings.Replace(edited, "  agent-ops:\n", "  agent-cli:\n", 1)
	if err := os.WriteFile(e.config, []byte(viaCLI), 0o600); err != nil {
		t.Fatal(err)
	}
	var res broker.ReloadResult
	if err := json.Unmarshal([]byte(e.mustCLI(t, "config", "reload", "-o", "json").stdout), &res); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Added, []string{"agent-cli"}) || !slices.Equal(res.Removed, []string{"agent-ops-renamed"}) {
		t.Errorf("config reload -o json = %+v, want agent-cli added, agent-ops-renamed removed", res)
	}
	nextNotify(t, msgs, "READY=1", 10*time.Second)
	evs := e.auditEvents(t, broker.EvConfigReload)
	if last := evs[len(evs)-1]; last.CallerUID == nil || *last.CallerUID != os.Geteuid() {
		t.Errorf("a reload through the API is audited without its caller: %+v", last)
	}
	// Rejected through the API: exit 1 naming the key; the daemon serves on.
	rejected := strings.Replace(viaCLI, "refresh_interval: 1s", "refresh_interval: 3s", 1)
	if err := os.WriteFile(e.config, []byte(rejected), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.cli(t, "config", "reload"); r.code != exitError || !strings.Contains(r.stderr, "broker.refresh_interval") || !strings.Contains(r.stderr, "restart the daemon") {
		t.Fatalf("config reload of a restart-only change: want exit %d naming broker.refresh_interval: %s", exitError, r)
	}
	e.mustCLI(t, "status")

	for _, s := range ended {
		e.mustCLI(t, "session", "end", s.id)
		e.requireTokenRejected(t, s.tok)
	}
	if n := len(e.auditEvents(t, broker.EvConfigReload)); n != 6 {
		t.Errorf("%d config.reload audit records, want 6", n)
	}
}

// reload writes cfg to the daemon's config file, sends SIGHUP, waits for
// RELOADING=1 (with MONOTONIC_USEC) and READY=1 on the notify socket, and
// returns the reload's audit record.
func (e *e2e) reload(t *testing.T, d *proc, msgs <-chan string, cfg string) broker.Event {
	t.Helper()
	before := len(e.auditEvents(t, broker.EvConfigReload))
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(15 * time.Second)
	for reloading := false; ; {
		select {
		case m := <-msgs:
			lines := strings.Split(m, "\n")
			switch {
			case lines[0] == "RELOADING=1":
				if len(lines) < 2 || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
					t.Fatalf("RELOADING=1 without MONOTONIC_USEC: %q", m)
				}
				reloading = true
			case lines[0] == "READY=1" && reloading:
				evs := e.auditEvents(t, broker.EvConfigReload)
				if len(evs) != before+1 {
					t.Fatalf("%d config.reload audit records after a reload, want %d", len(evs), before+1)
				}
				return evs[before]
			}
		case <-deadline:
			t.Fatalf("no RELOADING=1 then READY=1 within 15s of SIGHUP\ndaemon stderr:\n%s", d.stderr)
		}
	}
}

func readConfig(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSystemdUnitsReload: both shipped service units reload by sending the
// daemon SIGHUP (systemd-analyze verify, in TestSystemdUnitsVerify, checks
// the line is valid and /bin/kill exists).
func TestSystemdUnitsReload(t *testing.T) {
	t.Parallel()
	for _, unit := range []string{"credbroker.service", "user/credbroker.service"} {
		got := unitValues(t, unit, "ExecReload")
		if want := []string{"/bin/kill", "-HUP", "$MAINPID"}; !slices.Equal(got, want) {
			t.Errorf("%s: ExecReload= %q, want %q", unit, got, want)
		}
	}
}
