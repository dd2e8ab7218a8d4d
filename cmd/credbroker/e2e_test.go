package main

// End-to-end tests: the real credbroker binary (built with -tags failpoints)
// as daemon and CLI, against a real Vault dev server. Every test has its
// own Vault, daemon and tmpfs dir; the leak check runs at each cleanup.

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

const (
	readonlyPath = "secret/data/agent/readonly/config"
	devPath      = "secret/data/agent/dev/config"
)

var (
	startedRE = regexp.MustCompile(`(?m)^session (s-[a-z2-7]{16}) started for role (\S+)$`)
	dirRE     = regexp.MustCompile(`(?m)^  dir:\s+(\S+)$`)
)

// startJSON starts a session with --output json and decodes the answer.
func (e *e2e) startJSON(t *testing.T, args ...string) broker.SessionInfo {
	t.Helper()
	r := e.mustCLI(t, append([]string{"session", "start", "--output", "json"}, args...)...)
	var si broker.SessionInfo
	if err := json.Unmarshal([]byte(r.stdout), &si); err != nil {
		t.Fatalf("decode session start json: %v\n%s", err, r)
	}
	if si.ID == "" || si.Dir == "" || si.State != "active" {
		t.Fatalf("session start json lacks id, dir or active state: %+v", si)
	}
	return si
}

func (e *e2e) show(t *testing.T, id string) broker.SessionInfo {
	t.Helper()
	r := e.mustCLI(t, "session", "show", id, "--output", "json")
	var si broker.SessionInfo
	if err := json.Unmarshal([]byte(r.stdout), &si); err != nil {
		t.Fatalf("decode session show json: %v\n%s", err, r)
	}
	return si
}

func (e *e2e) listAll(t *testing.T) []broker.SessionInfo {
	t.Helper()
	r := e.mustCLI(t, "session", "list", "--all", "--output", "json")
	var ss []broker.SessionInfo
	if err := json.Unmarshal([]byte(r.stdout), &ss); err != nil {
		t.Fatalf("decode session list json: %v\n%s", err, r)
	}
	return ss
}

func requireState(t *testing.T, ss []broker.SessionInfo, id, state string) broker.SessionInfo {
	t.Helper()
	for _, s := range ss {
		if s.ID == id {
			if s.State != state {
				t.Fatalf("session %s is %s, want %s", id, s.State, state)
			}
			return s
		}
	}
	t.Fatalf("session %s not listed in %+v", id, ss)
	return broker.SessionInfo{}
}

func requireGone(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s still exists (stat: %v)", path, err)
	}
}

// requireReadOnlyDir checks the session dir: every dir 0500, every file
// 0400, all owned by us, and the Vault token among them.
func requireReadOnlyDir(t *testing.T, dir string) {
	t.Helper()
	sawToken := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o400)
		if d.IsDir() {
			want = 0o500
		} else if !fi.Mode().IsRegular() {
			t.Errorf("%s is %s, want a regular file", path, fi.Mode().Type())
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s has mode %#o, want %#o", path, fi.Mode().Perm(), want)
		}
		if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Getuid() {
			t.Errorf("%s is owned by uid %d, want %d", path, uid, os.Getuid())
		}
		sawToken = sawToken || path == filepath.Join(dir, "vault", "token")
		return nil
	})
	if err != nil || !sawToken {
		t.Fatalf("walk session dir %s: %v (vault/token found: %v)", dir, err, sawToken)
	}
}

// TestE2ETTLExpiry: the reaper ends a session when its ttl runs out (the
// slowest test: the shortest session lives 30s).
func TestE2ETTLExpiry(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.serve(t)
	si := e.startJSON(t, "--role", "agent-readonly", "--ttl", "30s")
	if d := si.ExpiresAt.Sub(si.CreatedAt); d != 30*time.Second {
		t.Fatalf("session lifetime %s, want 30s", d)
	}
	tok := e.sessionToken(t, si.Dir)
	e.requireTokenValid(t, tok)

	var got broker.SessionInfo
	if !eventually(45*time.Second, time.Second, func() bool { got = e.show(t, si.ID); return got.State == "ended" }) {
		t.Fatalf("45s after a 30s session started it is %s", got.State)
	}
	if !strings.Contains(got.EndReason, "ttl expired") || got.EndedAt.Before(si.ExpiresAt) {
		t.Fatalf("session ended at %s (%q), want after %s for ttl expired", got.EndedAt, got.EndReason, si.ExpiresAt)
	}
	requireGone(t, si.Dir)
	e.requireTokenRejected(t, tok)
}

// TestE2ESessionLifecycle: start (text and json), list, show, the dir and
// token on disk, the token's scope in Vault, end, revoked.
func TestE2ESessionLifecycle(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.serve(t)

	text := e.mustCLI(t, "session", "start", "--role", "agent-readonly")
	m, dm := startedRE.FindStringSubmatch(text.stdout), dirRE.FindStringSubmatch(text.stdout)
	if m == nil || dm == nil || m[2] != "agent-readonly" || !strings.Contains(text.stdout, "credbroker session end "+m[1]) {
		t.Fatalf("text output lacks the id, role, dir or end hint: %s", text)
	}
	js := e.startJSON(t, "--role", "agent-readonly", "--ttl", "10m")
	if d := js.ExpiresAt.Sub(js.CreatedAt); d != 10*time.Minute || js.Role != "agent-readonly" {
		t.Fatalf("json session: role %s, lifetime %s; want agent-readonly, 10m", js.Role, d)
	}
	if len(js.Leases) != 1 || js.Leases[0].Provider != "vault" || js.Leases[0].Kind != "token" || js.Leases[0].State != "active" {
		t.Fatalf("json session leases = %+v, want one active vault token", js.Leases)
	}
	sessions := []struct{ name, id, dir string }{{"text", m[1], dm[1]}, {"json", js.ID, js.Dir}}

	list := e.mustCLI(t, "session", "list")
	tokens := map[string]string{}
	for _, s := range sessions {
		if s.dir != filepath.Join(e.runtimeDir, "sessions", s.id) {
			t.Fatalf("%s session dir %s, want under %s", s.name, s.dir, e.runtimeDir)
		}
		if !regexp.MustCompile(`(?m)^` + s.id + `\s+agent-readonly\s+active\s`).MatchString(list.stdout) {
			t.Fatalf("session list does not show %s active: %s", s.id, list)
		}
		show := e.mustCLI(t, "session", "show", s.id)
		if !strings.Contains(show.stdout, s.id) || !strings.Contains(show.stdout, "vault/token/") {
			t.Fatalf("session show lacks the session or its token lease: %s", show)
		}
		if si := e.show(t, s.id); si.Dir != s.dir || si.State != "active" || len(si.Leases) != 1 {
			t.Fatalf("session show json = %+v", si)
		}
		requireReadOnlyDir(t, s.dir)
		tok := e.sessionToken(t, s.dir)
		e.requireRead(t, tok, readonlyPath, "region", "eu-west-1")
		e.requireDenied(t, tok, devPath)
		tokens[s.id] = tok
	}

	for i, s := range sessions {
		r := e.mustCLI(t, "session", "end", s.id)
		if !strings.Contains(r.stdout, "session "+s.id+" ended") {
			t.Fatalf("session end output: %s", r)
		}
		requireGone(t, s.dir)
		e.requireTokenRejected(t, tokens[s.id])
		if i == 0 { // ending one session leaves the other alone
			e.requireRead(t, tokens[sessions[1].id], readonlyPath, "region", "eu-west-1")
		}
		if si := e.show(t, s.id); si.State != "ended" || si.EndedAt.IsZero() || len(si.Leases) != 0 {
			t.Fatalf("after end, session show json = %+v", si)
		}
	}
	if r := e.mustCLI(t, "session", "list"); strings.TrimSpace(r.stdout) != "no sessions" {
		t.Fatalf("live list after both ended: %s", r)
	}
	// revoke ID -o json prints the ended session as JSON (it printed text).
	third := e.startJSON(t, "--role", "agent-readonly")
	rj := e.mustCLI(t, "revoke", third.ID, "-o", "json")
	var revoked broker.SessionInfo
	if err := json.Unmarshal([]byte(rj.stdout), &revoked); err != nil || revoked.ID != third.ID || revoked.State != "ended" {
		t.Fatalf("revoke %s -o json: %+v (%v) from %s", third.ID, revoked, err, rj)
	}
	all := e.listAll(t)
	for _, s := range sessions {
		requireState(t, all, s.id, "ended")
	}
}

// TestE2ESessionCommand: `session start -- CMD`: the command's exit status,
// its environment, and signals; the session ends whatever happens.
func TestE2ESessionCommand(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.serve(t)

	t.Run("ExitStatusAndEnv", func(t *testing.T) {
		out := filepath.Join(e.dir, "child-exit")
		if err := os.Mkdir(out, 0o700); err != nil {
			t.Fatal(err)
		}
		script := `env > "$E2E_OUT/env.tmp" && mv "$E2E_OUT/env.tmp" "$E2E_OUT/env" &&
while [ ! -e "$E2E_OUT/go" ]; do sleep 0.05; done; exit 7`
		host := []string{
			"E2E_OUT=" + out, "E2E_KEPT=kept", "E2E_UNNAMED=not-named", "LC_E2E=lc-kept",
			"AWS_ACCESS_KEY_ID=AKIAE2EHOSTACCESSKEY", "AWS_SECRET_ACCESS_KEY=e2e-host-aws-secret",
			"KUBECONFIG=/e2e/host/kubeconfig", "GITHUB_TOKEN=ghp_e2ehosttoken",
			"VAULT_TOKEN=hvs.e2e-host-vault-token", "VAULT_ADDR=http://host-vault.invalid:8200",
			// Missed by the deny-list this allow-list replaced.
			"DBUS_SESSION_BUS_ADDRESS=unix:path=/e2e/host/bus", "XDG_RUNTIME_DIR=/e2e/host/xdg",
			"GIT_CONFIG_PARAMETERS='http.extraheader'='Authorization: bearer e2e-host-git-header'",
			"VSCODE_IPC_HOOK_CLI=/e2e/host/vscode.sock", "E2E_SECRET_SEED=e2e-host-seed",
			// Named with --keep-env, but a URL with credentials: refused.
			"E2E_PROXY=http://alice:e2e-host-proxy-pass@proxy.invalid:3128",
		}
		p := e.start(t, "session start -- sh (exit 7)", host, "session", "start", "--role", "agent-dev",
			"--keep-env", "E2E_OUT,E2E_KEPT,E2E_PROXY", "--", "sh", "-c", script)
		env := map[string]string{}
		raw := waitFile(t, p, filepath.Join(out, "env"), 30*time.Second)
		for line := range strings.SplitSeq(raw, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		dir := env["CREDBROKER_SESSION_DIR"]
		id := filepath.Base(dir)
		tok := e.sessionToken(t, dir)
		if env["VAULT_TOKEN"] != tok || env["VAULT_ADDR"] != e.srv.Addr {
			t.Fatalf("child's VAULT_ADDR=%q and VAULT_TOKEN (%d bytes) are not the session's (%s)", env["VAULT_ADDR"], len(env["VAULT_TOKEN"]), e.srv.Addr)
		}
		for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "KUBECONFIG", "GITHUB_TOKEN", "E2E_UNNAMED",
			"DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "GIT_CONFIG_PARAMETERS", "VSCODE_IPC_HOOK_CLI", "E2E_SECRET_SEED", "E2E_PROXY"} {
			if v, ok := env[k]; ok {
				t.Errorf("host %s reached the child: %q", k, v)
			}
		}
		for _, v := range []string{"AKIAE2EHOSTACCESSKEY", "e2e-host-aws-secret", "/e2e/host/", "ghp_e2ehosttoken", "hvs.e2e-host-vault-token",
			"host-vault.invalid", "e2e-host-git-header", "e2e-host-seed", "e2e-host-proxy-pass"} {
			if strings.Contains(raw, v) {
				t.Errorf("host value %q reached the child's environment", v)
			}
		}
		if env["E2E_KEPT"] != "kept" || env["LC_E2E"] != "lc-kept" || env["PATH"] == "" {
			t.Errorf("named or base host variables lost: E2E_KEPT=%q LC_E2E=%q PATH=%q", env["E2E_KEPT"], env["LC_E2E"], env["PATH"])
		}
		if !strings.Contains(p.stderr.String(), `not passing "E2E_PROXY" to the command: its value holds a URL with credentials`) {
			t.Errorf("no warning about the refused E2E_PROXY:\n%s", p.stderr)
		}
		if strings.Contains(p.stderr.String(), "e2e-host-proxy-pass") {
			t.Errorf("the refused value was printed:\n%s", p.stderr)
		}
		// While the command runs the session is live and scoped to agent-dev.
		e.requireRead(t, tok, devPath, "db_host", "db.internal")
		e.requireDenied(t, tok, readonlyPath)
		requireState(t, e.listAll(t), id, "active")

		if err := os.WriteFile(filepath.Join(out, "go"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if code := p.wait(t, time.Minute); code != 7 {
			t.Fatalf("exit status %d, want the command's 7\nstderr:\n%s", code, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "session "+id+" ended") {
			t.Errorf("stderr does not report the session's end:\n%s", p.stderr)
		}
		e.requireTokenRejected(t, tok)
		requireGone(t, dir)
		requireState(t, e.listAll(t), id, "ended")
	})

	t.Run("CommandNotFound", func(t *testing.T) {
		before := len(e.listAll(t))
		r := e.cli(t, "session", "start", "--role", "agent-readonly", "--", "no-such-command-e2e")
		if r.code != exitError || !strings.Contains(r.stderr, `command "no-such-command-e2e"`) || !strings.Contains(r.stderr, "nothing was started") {
			t.Fatalf("want exit %d naming the command, before any session: %s", exitError, r)
		}
		// Checked before minting: no session was started (and ended) at all.
		if after := len(e.listAll(t)); after != before {
			t.Fatalf("a session was started for a command that does not exist: %d sessions before, %d after", before, after)
		}
	})

	for _, tc := range []struct {
		sig  syscall.Signal
		want int
	}{{syscall.SIGTERM, 128 + 15}, {syscall.SIGINT, 128 + 2}, {syscall.SIGHUP, 128 + 1}} {
		t.Run("Signal"+strings.ToUpper(tc.sig.String()[:1])+tc.sig.String()[1:], func(t *testing.T) {
			out, err := os.MkdirTemp(e.dir, "child-sig-")
			if err != nil {
				t.Fatal(err)
			}
			script := `printf %s "$CREDBROKER_SESSION_DIR" > "$E2E_OUT/dir.tmp" && mv "$E2E_OUT/dir.tmp" "$E2E_OUT/dir" && exec sleep 60`
			p := e.start(t, "session start -- sleep ("+tc.sig.String()+")", []string{"E2E_OUT=" + out},
				"session", "start", "--role", "agent-readonly", "--keep-env", "E2E_OUT", "--", "sh", "-c", script)
			dir := waitFile(t, p, filepath.Join(out, "dir"), 30*time.Second)
			tok := e.sessionToken(t, dir)
			e.requireTokenValid(t, tok)

			start := time.Now()
			if code := p.signal(t, tc.sig, 15*time.Second); code != tc.want {
				t.Fatalf("after %s: exit status %d, want %d\nstderr:\n%s", tc.sig, code, tc.want, p.stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %s to exit after %s", d, tc.sig)
			}
			e.requireTokenRejected(t, tok)
			requireGone(t, dir)
			requireState(t, e.listAll(t), filepath.Base(dir), "ended")
		})
	}
}

// TestE2EInterruptDuringStart signals the CLI while the daemon is in the
// middle of starting its session (held 1.5s just before the dir is written):
// the session the daemon then finishes must be ended, not left live with
// nobody to end it, and a command must never run.
func TestE2EInterruptDuringStart(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	d := e.serve(t, "CREDBROKER_FAILPOINT=before-write-dir", "CREDBROKER_FAILPOINT_SLEEP=1500ms")
	ran := filepath.Join(e.dir, "command-ran")
	for i, tc := range []struct {
		name string
		sig  syscall.Signal
		cmd  []string
	}{
		{"WithCommand", syscall.SIGINT, []string{"--keep-env", "E2E_RAN", "--", "sh", "-c", `touch "$E2E_RAN"; exec sleep 60`}},
		{"WithoutCommand", syscall.SIGTERM, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"session", "start", "--role", "agent-readonly"}, tc.cmd...)
			p := e.start(t, "session start ("+tc.name+")", []string{"E2E_RAN=" + ran}, args...)
			if !eventually(30*time.Second, 10*time.Millisecond, func() bool {
				return strings.Count(d.stderr.String(), "FAILPOINT before-write-dir") > i
			}) {
				t.Fatalf("the daemon never reached the failpoint:\n%s", d.stderr)
			}
			if code := p.signal(t, tc.sig, 30*time.Second); code != 128+int(tc.sig) {
				t.Errorf("exit status %d after %s during start, want %d\nstderr:\n%s", code, tc.sig, 128+int(tc.sig), p.stderr)
			}
			// Judge the state once the daemon has finished the start.
			if !eventually(30*time.Second, 10*time.Millisecond, func() bool {
				return strings.Count(d.stderr.String(), `"msg":"session started"`) > i
			}) {
				t.Fatalf("the daemon never finished the start:\n%s", d.stderr)
			}
			if r := e.mustCLI(t, "session", "list"); strings.TrimSpace(r.stdout) != "no sessions" {
				t.Errorf("an interrupted start left a live session: %s", r)
			}
			if n := e.liveSessionTokens(t); n != 0 {
				t.Errorf("%d session tokens valid after an interrupted start", n)
			}
			if _, err := os.Stat(ran); err == nil {
				t.Errorf("the command ran although the start was interrupted")
			}
		})
	}
}

// TestE2ECrashRecovery kills the daemon with SIGKILL at each step of a
// session start and checks that the restarted daemon leaves no valid
// session credential behind, wipes any dir the start wrote, and records the
// session as ended.
func TestE2ECrashRecovery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		step     string
		orphaned int    // live session tokens at the crash
		reason   string // the session's end reason after restart
		orphan   bool   // the token is unknown to the store: revoked as an orphan
	}{
		{"after-intent", 0, "interrupted by a broker crash", false},
		{"after-mint", 1, "interrupted by a broker crash", true},
		// A session still starting at the crash is ended as interrupted,
		// whether or not its dir was written: its caller never got it.
		{"after-record", 1, "interrupted by a broker crash", false},
		{"before-write-dir", 1, "interrupted by a broker crash", false},
		{"after-write-dir", 1, "interrupted by a broker crash", false},
		{"before-activate", 1, "interrupted by a broker crash", false},
	} {
		t.Run(tc.step, func(t *testing.T) {
			t.Parallel()
			e := newE2E(t)
			d := e.serve(t, "CREDBROKER_FAILPOINT="+tc.step)
			c := e.start(t, "session start (crashed)", nil, "session", "start", "--role", "agent-readonly")
			d.waitStderr(t, "FAILPOINT "+tc.step, 30*time.Second)
			d.kill()
			c.kill()
			if n := e.liveSessionTokens(t); n != tc.orphaned {
				t.Fatalf("at the crash Vault holds %d live session tokens, want %d", n, tc.orphaned)
			}

			e.serve(t)
			if !eventually(10*time.Second, 100*time.Millisecond, func() bool { return e.liveSessionTokens(t) == 0 }) {
				t.Fatalf("10s after restart Vault still holds %d live session tokens", e.liveSessionTokens(t))
			}
			ss := e.listAll(t)
			if len(ss) != 1 || ss[0].State != "ended" || !strings.Contains(ss[0].EndReason, tc.reason) {
				t.Fatalf("after restart sessions = %+v, want one ended (%q)", ss, tc.reason)
			}
			if ents, _ := os.ReadDir(filepath.Join(e.runtimeDir, "sessions")); len(ents) != 0 {
				t.Fatalf("session dirs left behind: %v", ents)
			}
			audit, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log"))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Contains(string(audit), `"event":"lease.orphan_revoked","session":"`+ss[0].ID); got != tc.orphan {
				t.Fatalf("audit log records an orphan revocation for %s: %v, want %v", ss[0].ID, got, tc.orphan)
			}
		})
	}
}

// TestE2EGracefulRestart: SIGTERM stops the daemon without touching live
// sessions; the next daemon carries them on.
func TestE2EGracefulRestart(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	d := e.serve(t)
	si := e.startJSON(t, "--role", "agent-dev")
	tok := e.sessionToken(t, si.Dir)

	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM, want 0\n%s", code, d.stderr)
	}
	if r := e.cli(t, "status"); r.code != exitNoDaemon {
		t.Fatalf("status with the daemon stopped: %s", r)
	}
	e.requireRead(t, tok, devPath, "db_host", "db.internal")

	e.serve(t)
	if got := e.show(t, si.ID); got.State != "active" || got.Dir != si.Dir || len(got.Leases) != len(si.Leases) {
		t.Fatalf("after restart session = %+v, want active with its %d leases", got, len(si.Leases))
	}
	requireReadOnlyDir(t, si.Dir)
	e.requireRead(t, tok, devPath, "db_host", "db.internal")
	e.mustCLI(t, "session", "end", si.ID)
	e.requireTokenRejected(t, tok)
	requireGone(t, si.Dir)
}

// TestE2EIncident: revoke --all revokes everything and refuses new
// sessions until the incident is cleared.
func TestE2EIncident(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.serve(t)
	a := e.startJSON(t, "--role", "agent-readonly")
	b := e.startJSON(t, "--role", "agent-dev")
	ta, tb := e.sessionToken(t, a.Dir), e.sessionToken(t, b.Dir)

	r := e.mustCLI(t, "revoke", "--all", "--reason", "e2e incident")
	for _, want := range []string{"incident declared: e2e incident", "sessions wiped: 2", "everything revoked"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("revoke --all output lacks %q: %s", want, r)
		}
	}
	if !regexp.MustCompile(`(?m)^\s+vault\s+revoke-all\s+revoked [1-9]\d* in \d+(\.\d+)?(ms|s|µs)$`).MatchString(r.stdout) {
		t.Fatalf("revoke --all output lacks the vault summary line: %s", r)
	}
	for _, s := range []struct {
		si  broker.SessionInfo
		tok string
	}{{a, ta}, {b, tb}} {
		e.requireTokenRejected(t, s.tok)
		requireGone(t, s.si.Dir)
		if got := requireState(t, e.listAll(t), s.si.ID, "ended"); !strings.Contains(got.EndReason, "incident") {
			t.Fatalf("session %s end reason %q, want the incident", s.si.ID, got.EndReason)
		}
	}

	refused := e.cli(t, "session", "start", "--role", "agent-readonly")
	if refused.code != exitRefused || !strings.Contains(refused.stderr, "incident declared") ||
		!strings.Contains(refused.stderr, "e2e incident") || !strings.Contains(refused.stderr, "incident clear") {
		t.Fatalf("session start during an incident: %s", refused)
	}
	if st := e.mustCLI(t, "status"); !strings.Contains(st.stdout, "INCIDENT declared") || !strings.Contains(st.stdout, "e2e incident") {
		t.Fatalf("status does not show the incident: %s", st)
	}
	if again := e.mustCLI(t, "revoke", "--all", "--reason", "again"); !strings.Contains(again.stdout, "everything revoked") {
		t.Fatalf("second revoke --all: %s", again)
	}
	if r := e.cli(t, "revoke", "--all"); r.code != exitUsage || !strings.Contains(r.stderr, "--reason") {
		t.Fatalf("revoke --all without --reason: %s", r)
	}

	if r := e.mustCLI(t, "incident", "clear"); !strings.Contains(r.stdout, "incident cleared") {
		t.Fatalf("incident clear: %s", r)
	}
	if r := e.cli(t, "incident", "clear"); r.code != exitUsage || !strings.Contains(r.stderr, "no incident") {
		t.Fatalf("incident clear without an incident: %s", r)
	}
	if st := e.mustCLI(t, "status"); !strings.Contains(st.stdout, "incident: none") {
		t.Fatalf("status after clear: %s", st)
	}
	c := e.startJSON(t, "--role", "agent-readonly")
	tc := e.sessionToken(t, c.Dir)
	e.requireRead(t, tc, readonlyPath, "region", "eu-west-1")

	r = e.mustCLI(t, "revoke", "--all", "--reason", "json report", "--output", "json")
	var rep broker.RevokeReport
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil {
		t.Fatalf("decode revoke --all json: %v\n%s", err, r)
	}
	if !rep.Incident || !rep.Complete || rep.Sessions != 1 || rep.Reason != "json report" || len(rep.Pending) != 0 ||
		len(rep.Providers) != 1 || rep.Providers[0].Provider != "vault" || rep.Providers[0].Revoked < 1 {
		t.Fatalf("revoke --all json report = %+v", rep)
	}
	e.requireTokenRejected(t, tc)
	requireGone(t, c.Dir)
	if n := e.liveSessionTokens(t); n != 0 {
		t.Fatalf("%d session tokens still valid after the incident", n)
	}
	e.mustCLI(t, "incident", "clear")
}

// TestE2EBadInput: each mistake gets a clear message, its documented exit
// status, and mints nothing.
func TestE2EBadInput(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	for _, args := range [][]string{{"session", "start", "--role", "agent-readonly"}, {"status"}} {
		if r := e.cli(t, args...); r.code != exitNoDaemon || !strings.Contains(r.stderr, "not running") || !strings.Contains(r.stderr, "`credbroker serve`") {
			t.Fatalf("without a daemon: %s", r)
		}
	}
	e.serve(t)
	before := e.accessors(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		msgs []string
	}{
		{"UnknownRole", []string{"session", "start", "--role", "nope"}, exitNotFound, []string{`unknown role "nope"`, "agent-dev, agent-readonly", e.config}},
		{"MissingRole", []string{"session", "start"}, exitUsage, []string{"--role is required"}},
		{"TTLAboveMax", []string{"session", "start", "--role", "agent-readonly", "--ttl", "2h"}, exitUsage, []string{"above role agent-readonly's max_ttl 1h0m0s"}},
		{"TTLBelowMin", []string{"session", "start", "--role", "agent-readonly", "--ttl", "5s"}, exitUsage, []string{"below the minimum 30s"}},
		{"TTLGarbage", []string{"session", "start", "--role", "agent-readonly", "--ttl", "soon"}, exitUsage, []string{`--ttl "soon" is not a duration`}},
		{"UnknownFlag", []string{"session", "start", "--role", "agent-readonly", "--bogus"}, exitUsage, []string{"unknown flag: --bogus"}},
		{"ArgsWithoutDash", []string{"session", "start", "--role", "agent-readonly", "sh"}, exitUsage, []string{"put the command after --"}},
		{"EndUnknownID", []string{"session", "end", "s-aaaaaaaaaaaaaaaa"}, exitNotFound, []string{"session not found", "s-aaaaaaaaaaaaaaaa"}},
		{"ShowUnknownID", []string{"session", "show", "s-aaaaaaaaaaaaaaaa"}, exitNotFound, []string{"s-aaaaaaaaaaaaaaaa"}},
		{"EndMalformedID", []string{"session", "end", "../state"}, exitUsage, []string{"../state"}},
		{"RevokeIDAndAll", []string{"revoke", "--all", "--reason", "x", "s-aaaaaaaaaaaaaaaa"}, exitUsage, []string{"not both"}},
		{"BadOutput", []string{"session", "list", "--output", "yaml"}, exitUsage, []string{"--output"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.cli(t, tc.args...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %s", r.code, tc.code, r)
			}
			for _, m := range tc.msgs {
				if !strings.Contains(r.stderr, m) {
					t.Errorf("stderr lacks %q: %s", m, r)
				}
			}
			for acc := range e.accessors(t) {
				if !before[acc] {
					t.Errorf("a new token (accessor %s) exists in Vault", acc)
				}
			}
		})
	}
	if r := e.mustCLI(t, "session", "list", "--all"); strings.TrimSpace(r.stdout) != "no sessions" {
		t.Fatalf("sessions recorded after bad input: %s", r)
	}
}

// TestE2EServeRefuses: serve stops at once, naming the problem, on a bad
// config, on a runtime_dir that is not tmpfs or that another uid owns or
// others may write to (where a fake daemon could take the socket's place),
// and on a broker.daemon_uid that is not its own.
func TestE2EServeRefuses(t *testing.T) {
	t.Parallel()
	disk := t.TempDir()
	if agentenv.CheckMemoryFS(disk) == nil {
		t.Fatalf("precondition: t.TempDir() %s is on tmpfs; this test needs a disk dir", disk)
	}
	for _, tc := range []struct {
		name string
		edit func(t *testing.T, e *e2e, cfg string) string // the config newE2EAt wrote → the bad one
		want func(e *e2e) []string
	}{
		{"YAMLSyntax", func(*testing.T, *e2e, string) string { return "broker:\n  refresh_interval: 1s\n  socket: a: b\n" },
			func(e *e2e) []string { return []string{e.config + ":3: ", "mapping values are not allowed"} }},
		{"UnknownField", func(*testing.T, *e2e, string) string {
			return "broker:\n  refresh_interval: 1s\n  sockett: /tmp/x.sock\n"
		}, func(e *e2e) []string { return []string{e.config + ":3:3: ", `unknown field "sockett"`} }},
		{"TTLAboveMax", func(_ *testing.T, _ *e2e, cfg string) string {
			return strings.Replace(cfg, "max_ttl: 1h", "max_ttl: 1m", 1)
		}, func(e *e2e) []string { return []string{e.config + ":19:5: ", "max_ttl: 1m is shorter than ttl 15m"} }},
		{"RuntimeDirWritable", func(t *testing.T, e *e2e, cfg string) string {
			mkdirMode(t, e.runtimeDir, 0o777, -1)
			return cfg + "\n"
		}, func(e *e2e) []string {
			return []string{"broker.runtime_dir " + e.runtimeDir + " is mode 0777, writable by group or others", "chmod 0700"}
		}},
		{"RuntimeDirForeign", func(t *testing.T, e *e2e, cfg string) string {
			mkdirMode(t, e.runtimeDir, 0o700, 65534)
			return cfg + "\n"
		}, func(e *e2e) []string {
			return []string{"broker.runtime_dir " + e.runtimeDir + " is owned by uid 65534, not by the daemon's uid 0", "remove it"}
		}},
		{"DaemonUIDMismatch", func(_ *testing.T, _ *e2e, cfg string) string {
			return strings.Replace(cfg, "broker:\n", "broker:\n  daemon_uid: 65534\n", 1)
		}, func(*e2e) []string {
			return []string{"broker.daemon_uid is 65534 but the daemon runs as uid 0"}
		}},
		{"RuntimeDirOnDisk", func(_ *testing.T, e *e2e, cfg string) string {
			return strings.Replace(cfg, "runtime_dir: "+e.runtimeDir, "runtime_dir: "+disk, 1)
		}, func(*e2e) []string { return []string{disk, "not tmpfs"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newE2EAt(t, nil, closedAddr(t))
			cfg, err := os.ReadFile(e.config)
			if err != nil {
				t.Fatal(err)
			}
			bad := tc.edit(t, e, string(cfg))
			if bad == string(cfg) {
				t.Fatal("the edit left the config unchanged")
			}
			if err := os.WriteFile(e.config, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			d := e.start(t, "serve", []string{brokerTokenEnv + "=" + vaulttest.RootToken}, "serve")
			if code := d.wait(t, 20*time.Second); code == 0 {
				t.Fatalf("serve exited 0 on a bad setup\n%s", d.stderr)
			}
			for _, m := range tc.want(e) {
				if !strings.Contains(d.stderr.String(), m) {
					t.Errorf("serve's error lacks %q:\n%s", m, d.stderr)
				}
			}
			if ents, _ := os.ReadDir(disk); len(ents) != 0 {
				t.Errorf("serve wrote to the disk dir: %v", ents)
			}
			if _, err := os.Lstat(filepath.Join(e.runtimeDir, "broker.sock")); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("serve created its socket on a bad setup (%v)", err)
			}
		})
	}
}

// TestE2EVaultUnreachable: the daemon starts without Vault; a session then
// fails with the provider's exit status, naming Vault, and leaves nothing.
func TestE2EVaultUnreachable(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	e := newE2EAt(t, nil, addr)
	d := e.serve(t)
	r := e.cli(t, "session", "start", "--role", "agent-readonly")
	if r.code != exitProvider || !strings.Contains(r.stderr, "vault") || !strings.Contains(r.stderr, strings.TrimPrefix(addr, "http://")) {
		t.Fatalf("session start with Vault down: want exit %d naming vault at %s: %s", exitProvider, addr, r)
	}
	if !strings.Contains(d.stderr.String(), "vault is not ready") {
		t.Errorf("daemon did not warn that Vault is unreachable:\n%s", d.stderr)
	}
	e.mustCLI(t, "status")
	if ss := e.listAll(t); len(ss) > 1 || (len(ss) == 1 && ss[0].State != "ended") {
		t.Fatalf("after a failed start sessions = %+v, want none live", ss)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.runtimeDir, "sessions")); len(ents) != 0 {
		t.Fatalf("session dirs left behind: %v", ents)
	}
}

// TestE2ESecretsNeverLeak runs every command that handles a session and
// checks that no token or private key reaches the audit log, the lease
// store, the daemon's logs or any command output (the same check runs at
// every test's cleanup).
func TestE2ESecretsNeverLeak(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	d := e.serve(t)
	dbg := []string{"--log-level", "debug"}
	a := e.startJSON(t, append(dbg, "--role", "agent-dev")...)
	b := e.startJSON(t, "--role", "agent-readonly")
	ta, tb := e.sessionToken(t, a.Dir), e.sessionToken(t, b.Dir)
	// Positive control: the secrets are in the session dir, so a substring
	// scan does find them where they belong.
	envA, err := os.ReadFile(filepath.Join(a.Dir, "env"))
	if err != nil || !strings.Contains(string(envA), ta) {
		t.Fatalf("session env file lacks its token (read error: %v)", err)
	}
	e.mustCLI(t, append(dbg, "session", "start", "--role", "agent-readonly", "--", "sh", "-c", "test -n \"$VAULT_TOKEN\"")...)
	for _, args := range [][]string{
		{"session", "list", "--all"}, {"session", "list", "--output", "json"},
		{"session", "show", a.ID}, {"session", "show", a.ID, "--output", "json"},
		{"status"}, {"status", "--output", "json"},
	} {
		e.mustCLI(t, append(dbg, args...)...)
	}
	e.mustCLI(t, append(dbg, "session", "end", b.ID)...)
	e.requireTokenRejected(t, tb)
	e.mustCLI(t, append(dbg, "revoke", "--all", "--reason", "leak test", "--output", "json")...)
	e.requireTokenRejected(t, ta)
	e.mustCLI(t, "incident", "clear")
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("daemon exited %d", code)
	}

	audit, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log"))
	if err != nil || !strings.Contains(string(audit), a.ID) || !strings.Contains(string(audit), "lease.mint") {
		t.Fatalf("audit log missing or without the sessions' events (err %v)", err)
	}
	if fi, err := os.Stat(filepath.Join(e.stateDir, "leases.db")); err != nil || fi.Size() == 0 {
		t.Fatalf("lease store missing or empty: %v", err)
	}
	if n := len(e.secrets); n < 4 { // root token, two session tokens, a private key
		t.Fatalf("only %d secrets collected", n)
	}
	e.checkNoLeaks(t)
	e.leaksChecked = true
}

// TestE2EVersionAndHelp: commands that need neither daemon nor Vault.
func TestE2EVersionAndHelp(t *testing.T) {
	t.Parallel()
	e := newE2EAt(t, nil, closedAddr(t))
	for _, tc := range []struct {
		args []string
		want *regexp.Regexp
	}{
		{[]string{"version"}, regexp.MustCompile(`^credbroker \S+.* \(go\S+ linux/\w+\)\n$`)},
		{[]string{"completion", "bash"}, regexp.MustCompile(`(?s)^# bash completion V2 for credbroker.*complete -o default -F __start_credbroker credbroker`)},
		{[]string{"completion", "zsh"}, regexp.MustCompile(`^#compdef credbroker`)},
		{[]string{"--help"}, regexp.MustCompile(`(?s)Exit status:.*3  the daemon is not running`)},
	} {
		r := e.mustCLI(t, tc.args...)
		if !tc.want.MatchString(r.stdout) {
			t.Errorf("stdout does not match %s: %s", tc.want, r)
		}
	}
}

// TestE2EHeldSessionEndsWithItsHolder: `session start -- CMD` holds its
// session on a connection to the daemon, so SIGKILL of the wrapper (which
// cannot end the session itself) still ends it at once; a daemon restart
// in between does not end it, and the wrapper holds it again.
func TestE2EHeldSessionEndsWithItsHolder(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	d := e.serve(t)
	p := e.start(t, "session start -- sleep", nil, "session", "start", "--role", "agent-readonly", "--",
		"sh", "-c", "exec sleep 30 </dev/null >/dev/null 2>&1") // the orphan must not hold the test's pipes
	var si broker.SessionInfo
	if !eventually(20*time.Second, 50*time.Millisecond, func() bool {
		ss := e.listAll(t)
		if len(ss) == 1 && ss[0].State == "active" {
			si = ss[0]
			return true
		}
		return false
	}) {
		t.Fatalf("no active session:\n%s", p.stderr)
	}
	tok := e.sessionToken(t, si.Dir)

	// A graceful daemon restart lets the hold go without ending the session.
	d.signal(t, syscall.SIGTERM, 10*time.Second)
	e.serve(t)
	time.Sleep(1500 * time.Millisecond) // the wrapper holds it again within a second
	if s := e.show(t, si.ID); s.State != "active" {
		t.Fatalf("a daemon restart ended the held session: %q (%s)", s.State, s.EndReason)
	}
	e.requireTokenValid(t, tok)

	p.kill() // SIGKILL: the wrapper cannot end the session itself
	if !eventually(5*time.Second, 50*time.Millisecond, func() bool { return e.show(t, si.ID).State == "ended" }) {
		t.Fatalf("5 s after SIGKILL of its holder the session is %q", e.show(t, si.ID).State)
	}
	if s := e.show(t, si.ID); !strings.Contains(s.EndReason, "went away") {
		t.Fatalf("end reason %q, want the holder's death", s.EndReason)
	}
	e.requireTokenRejected(t, tok)
}
