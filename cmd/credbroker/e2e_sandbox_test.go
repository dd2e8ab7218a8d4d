package main

// End-to-end tests of `credbroker run` with real sandboxes (Docker and
// bubblewrap), a real Vault and the real daemon. In CI a missing engine
// fails these tests; elsewhere they say loudly that they did not run.

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/internal/secret"
)

// agentScript is the sandboxed agent: it reports what it can see and do,
// one "key: value" line each, waits for a refresh of a credential file,
// and exits 3. Its arguments are host paths it must not be able to read.
const agentScript = `D=/run/credbroker
echo "uid: $(id -u)"
echo "home: $HOME"
echo "session-dir: $CREDBROKER_SESSION_DIR"
echo "token-sha: $(busybox sha256sum < "$D/vault/token" | cut -d' ' -f1)"
echo "env-names: $(env | cut -d= -f1 | sort | tr '\n' ' ')"
echo "keep: $SANDBOX_KEEP"
if env | grep -q -e AKIAHOSTSANDBOXKEY -e host-sandbox-aws -e host-sandbox-profile -e hvs.host-sandbox -e /host/sandbox -e ghp_hostsandbox -e kept-on-host; then echo "host-values: LEAKED"; fi
get() { busybox wget -q -O- --header "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/secret/data/agent/$1/config"; }
if get readonly | grep -q '"region":"eu-west-1"'; then echo "vault-read: ok"; else echo "vault-read: FAILED"; fi
if get dev >/dev/null 2>&1; then echo "vault-scope: ALLOWED"; else echo "vault-scope: denied"; fi
try() { n=$1; shift; if "$@" >/dev/null 2>&1; then echo "$n: ALLOWED"; else echo "$n: denied"; fi; }
try create touch "$D/new"
try mkdir mkdir "$D/newdir"
try write sh -c "echo x > $D/vault/token"
try append sh -c "echo x >> $D/env"
try truncate sh -c ": > $D/session.json"
try rename mv "$D/env" "$D/env2"
try rename-nested mv "$D/vault/token" "$D/vault/token2"
try chmod-dir chmod 700 "$D"
try chmod-file chmod 600 "$D/vault/token"
try chown chown 65534 "$D/env"
try delete rm -f "$D/vault/token"
try delete-tree rm -rf "$D/vault"
try symlink ln -s / "$D/link"
i=1; for f in "$@"; do try "read-host-$i" cat "$f"; i=$((i+1)); done
try read-dotenv cat /workspace/../.env
try read-home-aws ls -a "$HOME/.aws"
try rootfs-write touch /rootfs-file
try tmp-write touch /tmp/x
try project-write sh -c 'echo hello > /workspace/agent-wrote'
if grep -q gen-2 "$D/vault/secrets/config.json"; then echo "refresh: too early"; fi
echo "$CREDBROKER_SESSION_ID" > /workspace/ready
i=0
while ! grep -q gen-2 "$D/vault/secrets/config.json" 2>/dev/null; do
  i=$((i+1)); [ $i -gt 600 ] && break; sleep 0.1
done
if grep -q gen-2 "$D/vault/secrets/config.json"; then echo "refresh: seen"; else echo "refresh: NOT SEEN"; fi
exit 3`

// TestSandboxAgent: inside the sandbox the agent reads its credentials and
// uses them at Vault (network host), cannot change anything in its session
// dir, cannot see host credentials (files or variables), sees a refresh
// made while it runs; its exit status 3 ends the session.
func TestSandboxAgent(t *testing.T) {
	t.Parallel()
	for _, engine := range sandboxEngines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, engine)
			argv := append([]string{"sh", "-c", agentScript, "agent"}, s.hostFiles...)
			p := s.run(t, "run agent", []string{"SANDBOX_KEEP=passed-through"},
				[]string{"--network", "host", "--keep-env", "SANDBOX_KEEP"}, argv...)
			si, tok := s.session(t, p, "ready")
			requireSessionDirUntouched(t, si.Dir)

			// A refresh by the broker: an atomic rename in the session dir,
			// which the read-only directory mount shows at once.
			w := &agentenv.Writer{Root: filepath.Join(s.runtimeDir, "sessions")}
			if err := w.Update(si.ID, nobody, map[string]secret.Value{
				"vault/secrets/config.json": secret.New(`{"data":{"data":{"region":"gen-2"}}}`),
			}, nil); err != nil {
				t.Fatal(err)
			}
			if code := p.wait(t, 2*time.Minute); code != 3 {
				t.Fatalf("exit status %d, want the agent's 3\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
			}
			got := lines(p.stdout.String())
			sum := sha256.Sum256([]byte(tok))
			want := map[string]string{
				"uid": "65534", "home": "/tmp", "session-dir": "/run/credbroker",
				"token-sha": hex.EncodeToString(sum[:]), "keep": "passed-through",
				"vault-read": "ok", "vault-scope": "denied", "refresh": "seen",
				"rootfs-write": "denied", "tmp-write": "ALLOWED", "project-write": "ALLOWED",
				"read-dotenv": "denied", "read-home-aws": "denied",
			}
			for _, k := range []string{"create", "mkdir", "write", "append", "truncate", "rename", "rename-nested",
				"chmod-dir", "chmod-file", "chown", "delete", "delete-tree", "symlink"} {
				want[k] = "denied"
			}
			for i := range s.hostFiles {
				want["read-host-"+string(rune('1'+i))] = "denied"
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s: %q, want %q", k, got[k], v)
				}
			}
			if _, leaked := got["host-values"]; leaked {
				t.Errorf("host credential values reached the agent")
			}
			names := " " + got["env-names"]
			for _, n := range []string{"VAULT_ADDR", "VAULT_TOKEN", "CREDBROKER_SESSION_DIR", "CREDBROKER_SESSION_ID", "HOME", "SANDBOX_KEEP"} {
				if !strings.Contains(names, " "+n+" ") {
					t.Errorf("agent lacks %s; it has: %s", n, names)
				}
			}
			for _, kv := range hostCreds {
				// VAULT_TOKEN is the session's (token-sha above); the host's
				// value is caught by host-values.
				if n, _, _ := strings.Cut(kv, "="); n != "VAULT_TOKEN" && strings.Contains(names, " "+n+" ") {
					t.Errorf("host variable %s reached the agent", n)
				}
			}
			if b, err := os.ReadFile(filepath.Join(s.project, "agent-wrote")); err != nil || string(b) != "hello\n" {
				t.Errorf("the agent's write to the project: %q, %v", b, err)
			}
			if t.Failed() {
				t.Logf("agent output:\n%s\nstderr:\n%s", p.stdout, p.stderr)
			}
			if !strings.Contains(p.stderr.String(), "session "+si.ID+" ended") {
				t.Errorf("stderr does not report the session's end:\n%s", p.stderr)
			}
			s.requireEnded(t, si, tok, "")
		})
	}
}

// requireSessionDirUntouched: after the agent's attempts, the host's
// session dir holds exactly what the broker wrote, with its modes.
func requireSessionDirUntouched(t *testing.T, dir string) {
	t.Helper()
	var got []string
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		got = append(got, rel+" "+fi.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{". dr-x------", "env -r--------", "session.json -r--------", "vault dr-x------",
		"vault/secrets dr-x------", "vault/secrets/config.json -r--------", "vault/token -r--------"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("session dir after the agent's attempts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSandboxDefaults: without --network the agent has no network, without
// --uid a root caller's agent runs as nobody, with --no-project it starts
// in its own /tmp; exit status 0 ends the session too.
func TestSandboxDefaults(t *testing.T) {
	t.Parallel()
	for _, engine := range sandboxEngines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, engine)
			script := `echo "uid: $(id -u)"; echo "pwd: $(pwd)"
if busybox wget -q -O- "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1; then echo "network: REACHED"; else echo "network: none"; fi
echo "id: $CREDBROKER_SESSION_ID"`
			p := s.start(t, "run defaults ("+engine+")", []string{"HOME=" + s.home},
				"run", "--role", "agent-readonly", "--sandbox", engine, "--no-project", "--", "sh", "-c", script)
			if code := p.wait(t, 2*time.Minute); code != 0 {
				t.Fatalf("exit status %d\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
			}
			got := lines(p.stdout.String())
			if got["uid"] != "65534" || got["pwd"] != "/tmp" || got["network"] != "none" {
				t.Errorf("uid %q, pwd %q, network %q; want 65534, /tmp, none\n%s", got["uid"], got["pwd"], got["network"], p.stdout)
			}
			si := s.show(t, got["id"])
			if si.State != "ended" || !strings.Contains(si.EndReason, "status 0") {
				t.Errorf("session %s: %s (%q), want ended with status 0", si.ID, si.State, si.EndReason)
			}
			requireSandboxGone(t, si.ID, "")
		})
	}
}

// TestSandboxEndsSession: the container or process being killed, and
// SIGTERM or SIGINT to `credbroker run`, all end the session; an agent
// that ignores SIGTERM is killed after --grace. Afterwards the session's
// token is rejected by Vault and nothing of the sandbox is left.
func TestSandboxEndsSession(t *testing.T) {
	t.Parallel()
	for _, engine := range sandboxEngines {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			s := newSandbox(t, engine)
			for _, tc := range []struct {
				name   string
				ignore bool
				end    func(t *testing.T, p *proc, id, mark string) int
				want   int
			}{
				{"Killed", false, func(t *testing.T, p *proc, id, mark string) int { return killSandbox(t, p, engine, id, mark) }, 128 + 9},
				{"SIGTERM", false, func(t *testing.T, p *proc, _, _ string) int { return p.signal(t, syscall.SIGTERM, 30*time.Second) }, 128 + 15},
				{"SIGINT", false, func(t *testing.T, p *proc, _, _ string) int { return p.signal(t, syscall.SIGINT, 30*time.Second) }, 128 + 2},
				{"IgnoresSIGTERM", true, func(t *testing.T, p *proc, _, _ string) int { return p.signal(t, syscall.SIGTERM, 30*time.Second) }, 128 + 9},
			} {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					mark := newMark()
					script := `echo "$CREDBROKER_SESSION_ID" > "/workspace/$1"; exec sleep "$2"`
					if tc.ignore {
						script = `trap '' TERM INT; ` + script
					}
					p := s.run(t, "run "+tc.name, nil, nil, "sh", "-c", script, "agent", "started-"+tc.name, mark)
					si, tok := s.session(t, p, "started-"+tc.name)
					if !eventually(30*time.Second, 20*time.Millisecond, func() bool { return len(sleepers(mark)) == 1 }) {
						t.Fatalf("the agent's sleep %s never showed up", mark)
					}
					start := time.Now()
					if code := tc.end(t, p, si.ID, mark); code != tc.want {
						t.Errorf("exit status %d, want %d\nstderr:\n%s", code, tc.want, p.stderr)
					}
					took := time.Since(start)
					if tc.ignore && took < 3*time.Second {
						t.Errorf("an agent ignoring SIGTERM was killed after %s, before the 3s grace", took)
					}
					s.requireEnded(t, si, tok, mark)
				})
			}
		})
	}
}

// killSandbox kills the sandbox from outside credbroker: `docker kill`, or
// SIGKILL to the agent process of a bwrap sandbox.
func killSandbox(t *testing.T, p *proc, engine, id, mark string) int {
	t.Helper()
	if engine == "docker" {
		if out, err := runCmd("docker", "kill", "credbroker-"+id); err != nil {
			t.Fatalf("docker kill: %v: %s", err, out)
		}
	} else {
		for _, pid := range sleepers(mark) {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
		}
	}
	return p.wait(t, 30*time.Second)
}

// TestSandboxBwrapDiesWithRun: SIGKILL to `credbroker run` (nothing can
// catch it) still takes a bubblewrap sandbox down (--die-with-parent), and
// the daemon ends the session, which `run` held on its connection (see
// docs/sandbox.md).
func TestSandboxBwrapDiesWithRun(t *testing.T) {
	t.Parallel()
	s := newSandbox(t, "bwrap")
	mark := newMark()
	p := s.run(t, "run killed", nil, nil, "sh", "-c", `echo "$CREDBROKER_SESSION_ID" > /workspace/ready; exec sleep "$1"`, "agent", mark)
	si, tok := s.session(t, p, "ready")
	if !eventually(30*time.Second, 20*time.Millisecond, func() bool { return len(sleepers(mark)) == 1 }) {
		t.Fatalf("the agent's sleep %s never showed up", mark)
	}
	p.kill()
	if !eventually(10*time.Second, 20*time.Millisecond, func() bool { return len(sleepers(mark)) == 0 }) {
		t.Fatalf("the bwrap sandbox outlived the credbroker run that was SIGKILLed")
	}
	if !eventually(5*time.Second, 50*time.Millisecond, func() bool { return s.show(t, si.ID).State == "ended" }) {
		t.Fatalf("5 s after SIGKILL of credbroker run its session is %q, want ended by the daemon", s.show(t, si.ID).State)
	}
	if got := s.show(t, si.ID).EndReason; !strings.Contains(got, "went away") {
		t.Fatalf("end reason %q, want the holder's death", got)
	}
	s.requireEnded(t, si, tok, mark)
}
