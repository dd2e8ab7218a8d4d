package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// unitDir holds the shipped units, seen from this package.
const unitDir = "../../configs/systemd"

// unitValues returns the fields of every key= line in a shipped unit.
func unitValues(t *testing.T, unit, key string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(unitDir, unit))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, key+"="); ok {
			out = append(out, strings.Fields(v)...)
		}
	}
	return out
}

// TestSystemdUnitsVerify runs `systemd-analyze verify` on the shipped
// units, with ExecStart pointed at the binaries under test (verify wants
// it to exist); any warning (an unknown or misspelt key) fails it too.
func TestSystemdUnitsVerify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, dir, exec string
		user            bool
	}{
		{"system", unitDir, "/usr/bin/credbroker", false},
		{"user", filepath.Join(unitDir, "user"), "%h/.local/bin/credbroker", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tmp := t.TempDir()
			for _, u := range []string{"credbroker.service", "credbroker.socket"} {
				b, err := os.ReadFile(filepath.Join(tt.dir, u))
				if err != nil {
					t.Fatal(err)
				}
				s := string(b)
				if strings.HasSuffix(u, ".service") {
					if !strings.Contains(s, "\nExecStart="+tt.exec+" serve") {
						t.Fatalf("%s: no ExecStart=%s serve", u, tt.exec)
					}
					s = strings.Replace(s, "ExecStart="+tt.exec, "ExecStart="+cbBin, 1)
				}
				if err := os.WriteFile(filepath.Join(tmp, u), []byte(s), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			args := []string{"verify", "./credbroker.socket", "./credbroker.service"}
			cmd := exec.Command("systemd-analyze", args...)
			if tt.user {
				rt := filepath.Join(tmp, "rt") // the user manager needs a runtime dir
				if err := os.Mkdir(rt, 0o700); err != nil {
					t.Fatal(err)
				}
				cmd = exec.Command("systemd-analyze", append([]string{"--user"}, args...)...)
				cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+rt)
			}
			cmd.Dir = tmp
			out, err := cmd.CombinedOutput()
			if err != nil || len(bytes.TrimSpace(out)) > 0 {
				t.Fatalf("systemd-analyze %s: %v\n%s", strings.Join(cmd.Args[1:], " "), err, out)
			}
		})
	}
}

// TestSystemdUnitCapabilitiesDocumented: the system unit grants what it
// bounds, and says why it keeps each capability.
func TestSystemdUnitCapabilitiesDocumented(t *testing.T) {
	t.Parallel()
	bound := unitValues(t, "credbroker.service", "CapabilityBoundingSet")
	amb := unitValues(t, "credbroker.service", "AmbientCapabilities")
	if len(bound) == 0 || !slices.Equal(bound, amb) {
		t.Fatalf("CapabilityBoundingSet %v and AmbientCapabilities %v differ (or are empty)", bound, amb)
	}
	b, _ := os.ReadFile(filepath.Join(unitDir, "credbroker.service"))
	for _, c := range bound {
		if !strings.Contains(string(b), "\n# "+c+": ") {
			t.Errorf("credbroker.service keeps %s without a \"# %s: why\" comment", c, c)
		}
	}
}

// daemonUID and sessionUID are the credbroker user and an agent's uid in
// TestE2ESystemdCapabilities; no account needs to exist for them.
const (
	capsDaemonUID  = "61000"
	capsSessionUID = "61001"
)

// TestE2ESystemdCapabilities runs the daemon as a uid of its own with
// exactly the system unit's capabilities (setpriv: bounding, inheritable
// and ambient sets, no_new_privs, as systemd sets them), and root starts a
// session for another uid and ends it. Then once per capability, without
// it: the cycle must break, or the capability is not needed and must go.
func TestE2ESystemdCapabilities(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Fatalf("this test runs the daemon as another uid, which needs root; run `make test` as root (CI does)")
	}
	caps := unitValues(t, "credbroker.service", "CapabilityBoundingSet")
	tests := []struct{ name, drop string }{{"the unit's capabilities", ""}}
	for _, c := range caps {
		tests = append(tests, struct{ name, drop string }{"without " + c, c})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var keep []string
			for _, c := range caps {
				if c != tt.drop {
					keep = append(keep, c)
				}
			}
			e := newE2E(t)
			err := capsCycle(t, e, keep)
			if tt.drop == "" && err != nil {
				t.Fatal(err)
			}
			if tt.drop != "" && err == nil {
				t.Fatalf("start and end worked without %s: drop it from credbroker.service", tt.drop)
			}
			if err != nil {
				t.Logf("without %s: %v", tt.drop, err)
			}
		})
	}
}

// capsCycle starts the daemon with caps only and runs a session for
// capsSessionUID from start to end; it returns what went wrong.
func capsCycle(t *testing.T, e *e2e, caps []string) error {
	t.Helper()
	// The CLI (root) accepts a daemon of another uid only when the config
	// names it (broker.daemon_uid), as a system install's config does.
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(strings.Replace(string(cfg), "broker:\n", "broker:\n  daemon_uid: "+capsDaemonUID+"\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "-R", capsDaemonUID+":"+capsDaemonUID, e.dir).CombinedOutput(); err != nil {
		t.Fatalf("chown %s: %v: %s", e.dir, err, out)
	}
	set := "-all"
	for _, c := range caps {
		set += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
	}
	d := e.startCmd(t, "daemon as "+capsDaemonUID, []string{brokerTokenEnv + "=" + vaulttest.RootToken}, "setpriv",
		"--reuid", capsDaemonUID, "--regid", capsDaemonUID, "--clear-groups",
		"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--no-new-privs",
		cbBin, "--config", e.config, "serve", "--log-level", "debug")
	if !eventually(30*time.Second, 50*time.Millisecond, func() bool {
		return d.exited() || e.run(t, runOpts{quiet: true}, "status").code == 0
	}) || d.exited() {
		t.Fatalf("daemon as uid %s not ready (exited: %v)\nstderr:\n%s", capsDaemonUID, d.exited(), d.stderr)
	}
	defer d.signal(t, syscall.SIGTERM, 30*time.Second)

	r := e.cli(t, "session", "start", "--role", "agent-readonly", "--uid", capsSessionUID, "--output", "json")
	if r.code != 0 {
		// What was minted for the failed session is revoked.
		if !eventually(10*time.Second, 100*time.Millisecond, func() bool { return e.liveSessionTokens(t) == 0 }) {
			t.Errorf("a failed session start left %d session tokens valid", e.liveSessionTokens(t))
		}
		return errors.New("session start: " + r.stderr)
	}
	var si broker.SessionInfo
	if err := json.Unmarshal([]byte(r.stdout), &si); err != nil {
		t.Fatalf("decode session start: %v\n%s", err, r)
	}
	tok := e.sessionToken(t, si.Dir)
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(si.Dir, "vault", "token"), &st); err != nil || st.Uid != 61001 || st.Mode&0o777 != 0o400 {
		t.Fatalf("session token file: owner %d mode %o (err %v), want %s and 0400", st.Uid, st.Mode&0o777, err, capsSessionUID)
	}
	if r := e.cli(t, "session", "end", si.ID); r.code != 0 {
		return errors.New("session end: " + r.stderr)
	}
	e.requireTokenRejected(t, tok)
	// The dir is renamed away first, then emptied: look for what is left.
	left, err := os.ReadDir(filepath.Dir(si.Dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		return fmt.Errorf("session end left %s/%s (daemon log: %s)", filepath.Dir(si.Dir), left[0].Name(), lastLine(d.stderr.String(), "remove"))
	}
	return nil
}

// lastLine is the last line of s that holds sub, or "".
func lastLine(s, sub string) string {
	lines := strings.Split(s, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], sub) {
			return lines[i]
		}
	}
	return ""
}
