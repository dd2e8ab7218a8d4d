package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/guard"
)

// The access tests run the real CLI as a second, real, unprivileged user:
// nobody (65534), with or without the supplementary group staff (50).
const (
	nobodyUID = 65534
	staffGID  = 50
)

var (
	asNobody      = &syscall.Credential{Uid: nobodyUID, Gid: nobodyUID, Groups: []uint32{}}
	asNobodyStaff = &syscall.Credential{Uid: nobodyUID, Gid: nobodyUID, Groups: []uint32{staffGID}}
)

// accessRoles are roles restricted to one uid and to one group, appended
// to the e2e config's roles.
const accessRoles = `  agent-ci:
    description: Only the CI runner's uid.
    ttl: 15m
    allowed_uids: [4242]
    vault:
      policies: [agent-readonly]
  agent-staff:
    description: Only members of staff.
    ttl: 15m
    allowed_groups: [staff]
    vault:
      policies: [agent-readonly]
`

// newAccessE2E is newE2E with nobody admitted to the socket
// (broker.allowed_uids), brokerExtra added to the broker block and the
// restricted roles added; nobody may read the config and reach the socket.
func newAccessE2E(t *testing.T, brokerExtra string) *e2e {
	t.Helper()
	e := newE2E(t)
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(b), "broker:\n", "broker:\n  allowed_uids: ["+strconv.Itoa(nobodyUID)+"]\n"+brokerExtra, 1) + accessRoles
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.config, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	return e
}

// runAs runs the credbroker CLI as cred (a real other uid), like
// `runuser -u nobody -- credbroker ...`.
func (e *e2e) runAs(t *testing.T, cred *syscall.Credential, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, cbBin, append([]string{"--config", e.config}, args...)...)
	cmd.Env = baseEnv("HOME=/nonexistent")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run credbroker %v as uid %d: %v", args, cred.Uid, err)
	}
	r := result{args: append([]string{"(uid " + strconv.Itoa(int(cred.Uid)) + ")"}, args...), stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	name := "as uid " + strconv.Itoa(int(cred.Uid)) + ": credbroker " + strings.Join(args, " ")
	_, _ = e.capture(name + " stdout").Write(stdout.Bytes())
	_, _ = e.capture(name + " stderr").Write(stderr.Bytes())
	return r
}

// auditEvents returns the daemon's audit records of kind.
func (e *e2e) auditEvents(t *testing.T, kind string) []broker.Event {
	t.Helper()
	f, err := os.Open(filepath.Join(e.stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []broker.Event
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev broker.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if ev.Event == kind {
			out = append(out, ev)
		}
	}
	return out
}

// requireRefusalAudited fails unless an audit record of kind names
// nobody as the caller and a reason containing want.
func (e *e2e) requireRefusalAudited(t *testing.T, kind, want string) {
	t.Helper()
	evs := e.auditEvents(t, kind)
	for _, ev := range evs {
		if ev.CallerUID != nil && *ev.CallerUID == nobodyUID && strings.Contains(ev.Reason, want) {
			return
		}
	}
	t.Fatalf("no %s audit record for uid %d with reason containing %q; got %+v", kind, nobodyUID, want, evs)
}

func (e *e2e) incident(t *testing.T) *broker.IncidentInfo {
	t.Helper()
	var st broker.Status
	r := e.mustCLI(t, "status", "--output", "json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatalf("decode status: %v\n%s", err, r)
	}
	return st.Incident
}

// TestE2EIncidentClearIsAdminOnly: an allowed_uids user may declare an
// incident (a safety action, audited) but not lift one root declared: exit
// 4, the lock stays, the refusal is audited. Listed in broker.admin_uids,
// the same user may.
func TestE2EIncidentClearIsAdminOnly(t *testing.T) {
	t.Parallel()
	t.Run("allowed user", func(t *testing.T) {
		t.Parallel()
		e := newAccessE2E(t, "")
		e.serve(t)
		e.mustCLI(t, "revoke", "--all", "--reason", "root declares")
		r := e.runAs(t, asNobody, "incident", "clear")
		if r.code != exitRefused || !strings.Contains(r.stderr, "broker.admin_uids") {
			t.Fatalf("want exit %d naming broker.admin_uids: %s", exitRefused, r)
		}
		if in := e.incident(t); in == nil || in.Reason != "root declares" {
			t.Fatalf("incident after the refused clear = %+v, want root's still declared", in)
		}
		e.requireRefusalAudited(t, broker.EvAccessRefused, "may not clear the incident")
		if r := e.runAs(t, asNobody, "session", "start", "--role", "agent-readonly"); r.code != exitRefused {
			t.Fatalf("start during the incident: %s", r)
		}

		e.mustCLI(t, "incident", "clear")
		r = e.runAs(t, asNobody, "revoke", "--all", "--reason", "nobody declares")
		if r.code != 0 {
			t.Fatalf("an allowed user declaring an incident: %s", r)
		}
		declared := e.auditEvents(t, broker.EvIncident)
		if last := declared[len(declared)-1]; last.CallerUID == nil || *last.CallerUID != nobodyUID {
			t.Fatalf("incident.declare records %+v, want caller uid %d", last, nobodyUID)
		}
		if r := e.runAs(t, asNobody, "incident", "clear"); r.code != exitRefused {
			t.Fatalf("clearing its own incident, not an admin: %s", r)
		}
	})
	t.Run("admin_uids user", func(t *testing.T) {
		t.Parallel()
		e := newAccessE2E(t, "  admin_uids: ["+strconv.Itoa(nobodyUID)+"]\n")
		e.serve(t)
		e.mustCLI(t, "revoke", "--all", "--reason", "root declares")
		if r := e.runAs(t, asNobody, "incident", "clear"); r.code != 0 {
			t.Fatalf("an admin_uids user clearing: %s", r)
		}
		if in := e.incident(t); in != nil {
			t.Fatalf("incident still declared: %+v", in)
		}
	})
}

// TestE2ERoleAccess: a role restricted to a uid or a group refuses other
// callers with exit 4, naming the role and the key that would allow them,
// and audits it; a supplementary group the kernel gives the caller counts;
// an unrestricted role stays open; admins may start every role.
func TestE2ERoleAccess(t *testing.T) {
	t.Parallel()
	e := newAccessE2E(t, "")
	e.serve(t)
	cases := []struct {
		name, role string
		cred       *syscall.Credential
		code       int
		stderr     string
	}{
		{"open role", "agent-readonly", asNobody, 0, ""},
		{"uid not listed", "agent-ci", asNobody, exitRefused, "roles.agent-ci.allowed_uids"},
		{"not in the group", "agent-staff", asNobody, exitRefused, "roles.agent-staff.allowed_groups"},
		{"supplementary group", "agent-staff", asNobodyStaff, 0, ""},
	}
	for _, tc := range cases {
		r := e.runAs(t, tc.cred, "session", "start", "--role", tc.role, "--output", "json")
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Fatalf("%s: want exit %d and %q on stderr: %s", tc.name, tc.code, tc.stderr, r)
		}
		if tc.code != 0 {
			if !strings.Contains(r.stderr, "uid 65534 may not start a session of role "+tc.role) {
				t.Fatalf("%s: the refusal does not name the uid and the role: %s", tc.name, r)
			}
			e.requireRefusalAudited(t, broker.EvSessionRefused, "role "+tc.role)
			continue
		}
		var si broker.SessionInfo
		if err := json.Unmarshal([]byte(r.stdout), &si); err != nil || si.State != "active" || si.CallerUID != nobodyUID {
			t.Fatalf("%s: session %+v (%v), want active and started by uid %d", tc.name, si, err, nobodyUID)
		}
	}
	// Root is an admin: restricted roles do not apply to it.
	e.startJSON(t, "--role", "agent-ci")
	if n := len(e.auditEvents(t, broker.EvSessionRefused)); n != 2 {
		t.Fatalf("%d session.refused records, want 2", n)
	}
}

// TestE2EOthersSessionsAreNotTheirs: an allowed user cannot end another
// user's session; the refusal is audited and the session stays live.
func TestE2EOthersSessionsAreNotTheirs(t *testing.T) {
	t.Parallel()
	e := newAccessE2E(t, "")
	e.serve(t)
	s := e.startJSON(t, "--role", "agent-readonly")
	tok := e.sessionToken(t, s.Dir)
	r := e.runAs(t, asNobody, "session", "end", s.ID)
	if r.code != exitRefused || !strings.Contains(r.stderr, "belongs to uid 0") {
		t.Fatalf("want exit %d: %s", exitRefused, r)
	}
	if got := e.show(t, s.ID); got.State != "active" {
		t.Fatalf("session is %s after a refused end, want active", got.State)
	}
	e.requireTokenValid(t, tok)
	e.requireRefusalAudited(t, broker.EvAccessRefused, "session "+s.ID+" belongs to uid 0")
}

// postHit posts a guard hit to the daemon as cred with curl (a real client
// that lets the test send what `guard scan` never would) and returns the
// HTTP status.
func (e *e2e) postHit(t *testing.T, cred *syscall.Credential, h broker.GuardHit) int {
	t.Helper()
	body, _ := json.Marshal(h)
	cmd := exec.Command("curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", filepath.Join(e.runtimeDir, "broker.sock"),
		"-X", "POST", "-H", "Content-Type: application/json", "--data-binary", string(body), "http://credbroker/v1/guard/hits")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl (Debian's curl is part of the test machine): %v %s", err, out)
	}
	code, err := strconv.Atoi(string(out))
	if err != nil {
		t.Fatalf("curl printed %q, want an HTTP status", out)
	}
	return code
}

// fingerprintOf returns a live fingerprint of session from the broker's
// fingerprint file.
func (e *e2e) fingerprintOf(t *testing.T, session string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.stateDir, guard.FingerprintsFile))
	if err != nil {
		t.Fatal(err)
	}
	for l := range strings.Lines(string(b)) {
		var fp guard.Fingerprint
		if json.Unmarshal([]byte(l), &fp) == nil && fp.Session == session {
			return fp.MAC
		}
	}
	t.Fatalf("no fingerprint of session %s in the broker's file", session)
	return ""
}

// TestE2EForgedGuardHit: a guard hit naming a session, without one of that
// session's fingerprints (none, a made-up one, another session's), is
// refused (403) and audited, and the session keeps working; `guard scan`
// of the real token still ends it.
func TestE2EForgedGuardHit(t *testing.T) {
	t.Parallel()
	e := newAccessE2E(t, "")
	e.serve(t)
	a, b := e.startJSON(t, "--role", "agent-readonly"), e.startJSON(t, "--role", "agent-readonly")
	tokA := e.sessionToken(t, a.Dir)
	forged := []struct {
		name, fingerprint string
	}{
		{"no fingerprint", ""},
		{"made up", strings.Repeat("0f", 32)},
		{"another session's", e.fingerprintOf(t, b.ID)},
	}
	for _, f := range forged {
		h := broker.GuardHit{Session: a.ID, Provider: "vault", What: "vault token", File: "x.txt", Line: 1,
			Encoding: "plain", Fingerprint: f.fingerprint, Revoke: true}
		if code := e.postHit(t, asNobody, h); code != 403 {
			t.Fatalf("%s: forged hit answered %d, want 403", f.name, code)
		}
		if got := e.show(t, a.ID); got.State != "active" {
			t.Fatalf("%s: session is %s after a forged hit, want active", f.name, got.State)
		}
	}
	e.requireTokenValid(t, tokA)
	e.requireRefusalAudited(t, broker.EvGuardHitRefused, "is not one of that session's live secrets")
	if n := len(e.auditEvents(t, broker.EvGuardHit)); n != 0 {
		t.Fatalf("%d guard.hit records for forged hits, want 0", n)
	}

	repo := t.TempDir()
	if err := os.WriteFile(filepath.Join(repo, "leak.txt"), []byte("VAULT_TOKEN="+tokA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.run(t, runOpts{dir: repo}, "guard", "scan", "."); r.code != exitLeak || !strings.Contains(r.stdout, "session "+a.ID+" revoked") {
		t.Fatalf("a real hit: %s", r)
	}
	e.requireTokenRejected(t, tokA)
}
