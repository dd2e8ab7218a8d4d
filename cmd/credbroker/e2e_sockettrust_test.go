package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// TestE2EClientRefusesForeignDaemon: a daemon run by another uid (here
// nobody, as another local user who took the socket's place would) is
// refused by the CLI before anything is sent: `status` fails naming the
// socket, the uid found and the uid expected, and `revoke --all` neither
// reaches it (no incident in its audit log) nor prints "declaring". With
// broker.daemon_uid naming that uid the same daemon is served normally.
// The daemon is non-dumpable: another process of its own uid cannot read
// its environment (which holds the broker's Vault token).
func TestE2EClientRefusesForeignDaemon(t *testing.T) {
	t.Parallel()
	e := newE2EAt(t, nil, closedAddr(t))
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	trusting := filepath.Join(e.dir, "trusting.yaml")
	withUID := strings.Replace(string(cfg), "broker:\n", "broker:\n  daemon_uid: 65534\n", 1)
	if err := os.WriteFile(trusting, []byte(withUID), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("chown", "-R", "65534:65534", e.dir).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v\n%s", err, out)
	}
	d := e.startAs(t, "daemon", asNobody, []string{brokerTokenEnv + "=" + vaulttest.RootToken}, "--config", trusting, "serve", "--log-level", "debug")
	if !eventually(30*time.Second, 50*time.Millisecond, func() bool {
		return d.exited() || e.run(t, runOpts{quiet: true}, "--config", trusting, "status").code == 0
	}) || d.exited() {
		t.Fatalf("daemon as uid 65534 not ready (exited: %v)\n%s", d.exited(), d.stderr)
	}

	sock := filepath.Join(e.runtimeDir, "broker.sock")
	r := e.cli(t, "status")
	for _, want := range []string{"refusing the daemon at " + sock, "it runs as uid 65534", "only root or uid 0", "nothing was sent", "broker.daemon_uid"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("status against a daemon of another uid: stderr lacks %q: %s", want, r)
		}
	}
	if r.code != exitError {
		t.Errorf("status against a daemon of another uid exited %d, want %d", r.code, exitError)
	}
	r = e.cli(t, "revoke", "--all", "--reason", "must not arrive")
	if r.code == 0 || !strings.Contains(r.stderr, "refusing the daemon at "+sock) || strings.Contains(r.stderr, "declaring") {
		t.Errorf("revoke --all against a daemon of another uid: %s", r)
	}
	var st broker.Status
	r = e.mustCLI(t, "--config", trusting, "status", "--output", "json")
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Incident != nil {
		t.Fatalf("the refused revoke --all reached the daemon (status %+v, err %v): %s", st, err, r)
	}
	if audit, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log")); err != nil || strings.Contains(string(audit), "incident.declare") {
		t.Fatalf("audit log: read error %v, or it records an incident the client should never have sent", err)
	}

	// Non-dumpable: /proc/PID/environ belongs to root, not to the daemon's
	// uid, and a process of that uid cannot read it.
	environ := filepath.Join("/proc", strconv.Itoa(d.cmd.Process.Pid), "environ")
	fi, err := os.Stat(environ)
	if err != nil {
		t.Fatal(err)
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; uid != 0 {
		t.Errorf("%s is owned by uid %d, want 0: the daemon is dumpable", environ, uid)
	}
	peek := exec.Command("cat", environ)
	peek.SysProcAttr = &syscall.SysProcAttr{Credential: asNobody}
	if out, err := peek.Output(); err == nil || strings.Contains(string(out), brokerTokenEnv) {
		t.Errorf("a process of the daemon's uid read its environment (%d bytes, err %v)", len(out), err)
	}
}

// TestE2EServeSurvivesSIGHUP: SIGHUP (a closed terminal, or an operator
// reloading) never kills the daemon: each one reloads the config (here
// unchanged, so nothing changes) and it keeps serving.
func TestE2EServeSurvivesSIGHUP(t *testing.T) {
	t.Parallel()
	e := newE2EAt(t, nil, closedAddr(t))
	d := e.serve(t)
	for range 2 {
		if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	d.waitStderr(t, `"change":"no change"`, 10*time.Second)
	time.Sleep(200 * time.Millisecond) // a fatal signal would have landed by now
	if d.exited() {
		t.Fatalf("the daemon exited (code %d) on SIGHUP\n%s", d.code, d.stderr)
	}
	e.mustCLI(t, "status")
}

// TestE2ERefusedCallerExits4: a uid the daemon does not admit exits 4
// ("caller not allowed") with a "forbidden: uid N ..." message, whether
// the socket's mode refuses it (EACCES on connect) or the daemon does
// (shared mode, uid not in allowed_uids); either way `revoke --all` prints
// "declaring incident" only once the daemon accepted the request, so
// neither refused run prints it and no incident is declared, while root's
// run does.
func TestE2ERefusedCallerExits4(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		shared bool
		want   string
	}{
		{"SocketMode", false, "forbidden: uid 65534 may not connect to the daemon socket "},
		{"NotAllowed", true, "forbidden: uid 65534 is not in broker.allowed_uids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newE2EAt(t, nil, closedAddr(t))
			if tc.shared {
				cfg, err := os.ReadFile(e.config)
				if err != nil {
					t.Fatal(err)
				}
				shared := strings.Replace(string(cfg), "broker:\n", "broker:\n  allowed_uids: [12345]\n", 1)
				if err := os.WriteFile(e.config, []byte(shared), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			e.serve(t)
			// nobody may read the config and reach the socket's dir; only
			// the socket's own mode (0600) or the daemon stands in the way.
			for p, m := range map[string]os.FileMode{e.dir: 0o711, e.runtimeDir: 0o711, e.config: 0o644} {
				if err := os.Chmod(p, m); err != nil {
					t.Fatal(err)
				}
			}
			sock := filepath.Join(e.runtimeDir, "broker.sock")
			for _, args := range [][]string{{"status"}, {"session", "list"}, {"revoke", "--all", "--reason", "not allowed"}} {
				r := e.run(t, runOpts{cred: asNobody, env: []string{"HOME=/nonexistent"}, dir: "/"}, args...)
				if r.code != exitRefused || !strings.Contains(r.stderr, tc.want) {
					t.Errorf("as uid 65534: want exit %d and %q: %s", exitRefused, tc.want, r)
				}
				if !tc.shared && !strings.Contains(r.stderr, sock) {
					t.Errorf("the refusal does not name the socket %s: %s", sock, r)
				}
				if strings.Contains(r.stderr, "declaring") {
					t.Errorf("a refused revoke --all announced an incident: %s", r)
				}
			}
			r := e.mustCLI(t, "status", "--output", "json")
			var st broker.Status
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Incident != nil {
				t.Fatalf("after refused callers: incident %+v (err %v), want none", st.Incident, err)
			}
			r = e.cli(t, "revoke", "--all", "--reason", "root may")
			if r.code != 0 && r.code != exitPending || !strings.Contains(r.stderr, "declaring incident and revoking every credential...") {
				t.Fatalf("root's revoke --all: %s", r)
			}
		})
	}
}

// mkdirMode creates dir with mode (past the umask), owned by uid unless
// uid is negative.
func mkdirMode(t *testing.T, dir string, mode os.FileMode, uid int) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
}
