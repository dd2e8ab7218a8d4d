package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestExecOutsideSession: `credbroker exec` on the host, where no session
// dir is mounted, refuses with status 8 and runs nothing.
func TestExecOutsideSession(t *testing.T) {
	t.Parallel()
	e := newE2EAt(t, nil, closedAddr(t))
	ran := filepath.Join(e.dir, "ran")
	r := e.cli(t, "exec", "--dir", filepath.Join(e.dir, "no-such-dir"), "--", "touch", ran)
	if r.code != exitSessionDead || !strings.Contains(r.stderr, "does not exist (is it mounted into the sandbox?)") {
		t.Errorf("want exit %d and a hint to mount the dir: %s", exitSessionDead, r)
	}
	if _, err := os.Stat(ran); err == nil {
		t.Errorf("exec ran the command outside a session dir")
	}
}

// TestSandboxExecRefuses: inside a real sandbox, `credbroker exec` refuses
// a dir that is not a session dir, an expired session, a revoked one, and
// a session ended while the sandbox runs: status 8, a message that says
// which, and the command never runs.
func TestSandboxExecRefuses(t *testing.T) {
	t.Parallel()
	for _, engine := range sandboxEngines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, engine)
			notSession := filepath.Join(s.dir, "not-a-session")
			if err := os.Mkdir(notSession, 0o500); err != nil {
				t.Fatal(err)
			}
			if err := os.Chown(notSession, nobody, nobody); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct{ name, dir, msg string }{
				{"NotASessionDir", notSession, "not a complete credbroker session dir"},
				{"Expired", fakeSession(t, s.dir, randomID("exp"), time.Now().Add(-time.Minute), nobody, false), "expired at"},
				{"Revoked", fakeSession(t, s.dir, randomID("rev"), time.Now().Add(time.Hour), nobody, true), "has been revoked"},
			} {
				// The command line exactly as `sandbox args` prints it.
				line := s.mustCLI(t, "sandbox", "args", "--engine", engine, "--session-dir", tc.dir, "--project", s.project,
					"--", "touch", "/workspace/ran-"+tc.name).stdout
				cmd := exec.Command("sh", "-c", line)
				cmd.Env = baseEnv("HOME=" + s.home)
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() != exitSessionDead || !strings.Contains(string(out), tc.msg) {
					t.Errorf("%s: got %v, want exit %d and %q:\n%s", tc.name, err, exitSessionDead, tc.msg, out)
				}
				if _, err := os.Stat(filepath.Join(s.project, "ran-"+tc.name)); err == nil {
					t.Errorf("%s: the command ran", tc.name)
				}
			}

			// A session ended while its sandbox runs: the dir is emptied
			// under the mount, and a new exec in the sandbox refuses.
			script := `echo "$CREDBROKER_SESSION_ID" > /workspace/ready
while [ ! -e /workspace/go ]; do sleep 0.1; done
/credbroker exec --dir /run/credbroker -- touch /workspace/ran-after-end
echo "exec-after-end: $?"
echo "entries: $(ls -A /run/credbroker | wc -l)"`
			p := s.run(t, "run ended", nil, nil, "sh", "-c", script)
			si, tok := s.session(t, p, "ready")
			s.mustCLI(t, "session", "end", si.ID)
			if err := os.WriteFile(filepath.Join(s.project, "go"), nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t, time.Minute); code != 0 {
				t.Errorf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
			}
			got := lines(p.stdout.String())
			if got["exec-after-end"] != "8" || got["entries"] != "0" || !strings.Contains(p.stderr.String(), "session unusable") {
				t.Errorf("exec after the session ended: %q, entries %q\nstdout:\n%s\nstderr:\n%s", got["exec-after-end"], got["entries"], p.stdout, p.stderr)
			}
			if _, err := os.Stat(filepath.Join(s.project, "ran-after-end")); err == nil {
				t.Errorf("the command ran after the session ended")
			}
			s.requireEnded(t, si, tok, "")
		})
	}
}

// TestSandboxBwrapUnreachable: with a root daemon's default 0700 runtime
// dir, the session's uid could not reach its session dir; `run --sandbox
// bwrap` says how to fix it before anything is minted: no session in the
// store, no session or lease record in the audit log (issue 12, item 16).
func TestSandboxBwrapUnreachable(t *testing.T) {
	t.Parallel()
	s := newSandbox(t, "bwrap")
	if err := os.Chmod(s.runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := s.run(t, "run unreachable", nil, nil, "touch", "/workspace/ran")
	if code := p.wait(t, time.Minute); code != exitError {
		t.Fatalf("exit status %d, want %d\nstderr:\n%s", code, exitError, p.stderr)
	}
	// The runtime dir, or sessions/ in it if the daemon made it already.
	for _, want := range []string{"uid 65534 cannot reach " + s.runtimeDir, "is mode 0700", "chmod 0711 broker.runtime_dir"} {
		if !strings.Contains(p.stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, p.stderr)
		}
	}
	if strings.Contains(p.stderr.String(), "session s-") {
		t.Errorf("a session was started:\n%s", p.stderr)
	}
	if ss := s.listAll(t); len(ss) != 0 {
		t.Errorf("the store holds sessions although nothing was to be minted: %+v", ss)
	}
	audit, err := os.ReadFile(filepath.Join(s.stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []string{`"session.`, `"lease.`} {
		if strings.Contains(string(audit), ev) {
			t.Errorf("the audit log has %s records although nothing was to be minted:\n%s", ev, audit)
		}
	}
	if n := s.liveSessionTokens(t); n != 0 {
		t.Errorf("%d session tokens live at Vault", n)
	}
	if _, err := os.Stat(filepath.Join(s.project, "ran")); err == nil {
		t.Errorf("the command ran")
	}
}
