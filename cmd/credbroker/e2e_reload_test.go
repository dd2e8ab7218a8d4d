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
	r := &reloadRun{e: e, d: e.serve(t, "NOTIFY_SOCKET="+nsock), msgs: msgs}
	nextNotify(t, msgs, "READY=1", 30*time.Second)
	ops := r.applyRoles(t)
	r.rejectBad(t)
	r.removeRole(t, ops)
	r.viaAPI(t)
	for _, s := range r.started {
		e.mustCLI(t, "session", "end", s.id)
		e.requireTokenRejected(t, s.tok)
	}
	if n := len(e.auditEvents(t, broker.EvConfigReload)); n != 6 {
		t.Errorf("%d config.reload audit records, want 6", n)
	}
}

// reloadRun is TestE2EReloadSIGHUP's daemon and what it started.
type reloadRun struct {
	e      *e2e
	d      *proc
	msgs   <-chan string
	edited string // the config applied by the first reload
	// started: every session, ended (and checked revoked) at the end.
	started []startedSession
}

type startedSession struct{ id, tok string }

// start starts a session (args: --role ROLE ...) and records it.
func (r *reloadRun) start(t *testing.T, args ...string) startedSession {
	t.Helper()
	si := r.e.startJSON(t, args...)
	s := startedSession{si.ID, r.e.sessionToken(t, si.Dir)}
	r.started = append(r.started, s)
	return s
}

// applyRoles: agent-readonly gets agent-dev's policy and secret and
// agent-ops is added; new sessions get them, the live one keeps its grant.
func (r *reloadRun) applyRoles(t *testing.T) (ops startedSession) {
	e := r.e
	orig := readConfig(t, e.config)
	live := r.start(t, "--role", "agent-readonly")
	e.requireDenied(t, live.tok, devSecret)
	if res := e.cli(t, "session", "start", "--role", "agent-ops"); res.code == 0 || !strings.Contains(res.stderr, "unknown role") {
		t.Fatalf("agent-ops before the reload: want unknown role: %s", res)
	}
	r.edited = strings.Replace(orig, "      policies: [agent-readonly]\n      secrets:\n        - name: config\n          path: "+readonlySecret,
		"      policies: [agent-dev]\n      secrets:\n        - name: config\n          path: "+devSecret, 1)
	r.edited += "  agent-ops:\n    ttl: 10m\n    max_ttl: 1h\n    vault:\n      policies: [agent-readonly]\n"
	if strings.Count(r.edited, "policies: [agent-dev]") != 2 {
		t.Fatal("the test's edit of agent-readonly matched nothing in the config")
	}
	ev := e.reload(t, r.d, r.msgs, r.edited)
	if ev.Reason != "applied: roles added: agent-ops; roles changed: agent-readonly" || ev.Error != "" {
		t.Fatalf("reload audited as %+v", ev)
	}
	fresh := r.start(t, "--role", "agent-readonly")
	e.requireRead(t, fresh.tok, devSecret, "db_host", "db.internal")
	e.requireTokenValid(t, live.tok)
	e.requireRead(t, live.tok, readonlySecret, "region", "eu-west-1")
	e.requireDenied(t, live.tok, devSecret)
	return r.start(t, "--role", "agent-ops")
}

// rejectBad: an invalid config, then a restart-only key; each is
// rejected and audited, and the daemon serves on with the config it had.
func (r *reloadRun) rejectBad(t *testing.T) {
	e := r.e
	for _, bad := range []struct{ edit, want string }{
		{strings.Replace(r.edited, "    max_ttl: 1h\n    vault:\n      policies: [agent-readonly]\n", "    max_ttl: 1m\n    vault:\n      policies: [agent-readonly]\n", 1), "roles.agent-ops.max_ttl"},
		{strings.Replace(r.edited, "refresh_interval: 1s", "refresh_interval: 2s", 1), "broker.refresh_interval"},
	} {
		if bad.edit == r.edited {
			t.Fatalf("the test's edit for %s matched nothing", bad.want)
		}
		ev := e.reload(t, r.d, r.msgs, bad.edit)
		if !strings.HasPrefix(ev.Reason, "rejected") || !strings.Contains(ev.Error, bad.want) {
			t.Fatalf("reload with a bad %s audited as %+v", bad.want, ev)
		}
		r.d.waitStderr(t, bad.want, 10*time.Second)
		// The CLI reads the file too: put the good one back, with no SIGHUP.
		if err := os.WriteFile(e.config, []byte(r.edited), 0o600); err != nil {
			t.Fatal(err)
		}
		e.requireRead(t, r.start(t, "--role", "agent-readonly").tok, devSecret, "db_host", "db.internal")
		r.start(t, "--role", "agent-ops", "--ttl", "30m") // max_ttl still 1h, not the rejected 1m
	}
}

// removeRole: agent-ops is refused to new sessions, its live one runs on.
func (r *reloadRun) removeRole(t *testing.T, ops startedSession) {
	e := r.e
	ev := e.reload(t, r.d, r.msgs, strings.Replace(r.edited, "  agent-ops:\n", "  agent-ops-renamed:\n", 1))
	if ev.Reason != "applied: roles added: agent-ops-renamed; roles removed: agent-ops" {
		t.Fatalf("reload audited as %+v", ev)
	}
	if res := e.cli(t, "session", "start", "--role", "agent-ops"); res.code == 0 || !strings.Contains(res.stderr, "unknown role") {
		t.Fatalf("a removed role started: %s", res)
	}
	e.requireTokenValid(t, ops.tok)
	if si := e.show(t, ops.id); si.State != "active" {
		t.Fatalf("the removed role's live session is %s, want active", si.State)
	}
}

// viaAPI: the same through `credbroker config reload` (root, an admin):
// applied and audited with its caller, then a restart-only change refused.
func (r *reloadRun) viaAPI(t *testing.T) {
	e := r.e
	viaCLI := strings.Replace(r.edited, "  agent-ops:\n", "  agent-cli:\n", 1)
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
	nextNotify(t, r.msgs, "READY=1", 10*time.Second)
	evs := e.auditEvents(t, broker.EvConfigReload)
	if last := evs[len(evs)-1]; last.CallerUID == nil || *last.CallerUID != os.Geteuid() {
		t.Errorf("a reload through the API is audited without its caller: %+v", last)
	}
	rejected := strings.Replace(viaCLI, "refresh_interval: 1s", "refresh_interval: 3s", 1)
	if err := os.WriteFile(e.config, []byte(rejected), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := e.cli(t, "config", "reload"); out.code != exitError || !strings.Contains(out.stderr, "broker.refresh_interval") || !strings.Contains(out.stderr, "restart the daemon") {
		t.Fatalf("config reload of a restart-only change: want exit %d naming broker.refresh_interval: %s", exitError, out)
	}
	e.mustCLI(t, "status")
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
