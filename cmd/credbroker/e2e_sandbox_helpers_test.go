package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/sandbox"
	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
	"github.com/credbroker/credbroker/broker"
)

// nobody is the non-root uid sandboxed agents run as in these tests (the
// tests run as root); sessions are started with --uid nobody to match.
const nobody = sandboxtest.NobodyUID

// sandboxEngines are the engines `credbroker run` drives.
var sandboxEngines = []string{"docker", "bwrap"}

// hostCreds are host variables that must never reach a sandboxed agent.
var hostCreds = []string{
	"AWS_ACCESS_KEY_ID=AKIAHOSTSANDBOXKEY", "AWS_SECRET_ACCESS_KEY=host-sandbox-aws-secret",
	"AWS_PROFILE=host-sandbox-profile", "VAULT_TOKEN=hvs.host-sandbox-vault-token",
	"KUBECONFIG=/host/sandbox/kubeconfig", "GITHUB_TOKEN=ghp_hostsandboxtoken",
	"SANDBOX_HOST_HARMLESS=kept-on-host",
}

// sbox is a sandbox test's world: Vault and the daemon (e2e), a host home
// with credentials planted in ~/.aws, ~/.ssh and ~/.kube, a project dir
// the agent may write, and a .env beside it that the agent must not read.
type sbox struct {
	*e2e
	engine    string
	home      string
	project   string
	hostFiles []string // planted files the agent must not read (host paths)
}

func newSandbox(t *testing.T, engine string) *sbox {
	t.Helper()
	sandboxtest.RequireEngine(t, engine)
	if engine == "docker" {
		sandboxtest.Image(t)
	}
	e := newE2E(t)
	e.serve(t)
	// bwrap runs as the session's uid and opens the session dir by path, so
	// every dir above it needs search permission (docs/sandbox.md).
	for _, d := range []string{e.dir, e.runtimeDir} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	s := &sbox{e2e: e, engine: engine, home: filepath.Join(e.dir, "home")}
	work := filepath.Join(e.dir, "work")
	s.project = filepath.Join(work, "project")
	planted := map[string]string{
		filepath.Join(s.home, ".aws", "credentials"): "[default]\naws_secret_access_key = HOST-PLANTED-AWS\n",
		filepath.Join(s.home, ".ssh", "id_ed25519"):  "-----BEGIN OPENSSH PRIVATE KEY-----\nHOST-PLANTED-SSH\n",
		filepath.Join(s.home, ".kube", "config"):     "users: [{name: admin, user: {token: HOST-PLANTED-KUBE}}]\n",
		filepath.Join(work, ".env"):                  "DATABASE_PASSWORD=HOST-PLANTED-DOTENV\n",
	}
	for p, content := range planted {
		// World-readable on purpose: only the sandbox's mounts keep them out.
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		s.hostFiles = append(s.hostFiles, p)
	}
	if err := os.Mkdir(s.project, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(s.project, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return s
}

// run starts `credbroker run` for role agent-readonly with the planted
// home and the host credential variables in its environment.
func (s *sbox) run(t *testing.T, name string, env, flags []string, argv ...string) *proc {
	t.Helper()
	args := []string{"run", "--role", "agent-readonly", "--sandbox", s.engine, "--project", s.project, "--uid", strconv.Itoa(nobody), "--grace", "3s"}
	args = append(append(append(args, flags...), "--"), argv...)
	env = append(append([]string{"HOME=" + s.home}, hostCreds...), env...)
	return s.start(t, name+" ("+s.engine+")", env, args...)
}

// session returns the live session whose id the agent wrote to file (a
// path in the project) and records its token as a secret.
func (s *sbox) session(t *testing.T, p *proc, file string) (broker.SessionInfo, string) {
	t.Helper()
	id := strings.TrimSpace(waitFile(t, p, filepath.Join(s.project, file), 90*time.Second))
	si := s.show(t, id)
	if si.State != "active" || si.UID != nobody {
		t.Fatalf("session %s is %s for uid %d, want active for uid %d", id, si.State, si.UID, nobody)
	}
	return si, s.sessionToken(t, si.Dir)
}

// requireEnded checks that the session ended and took everything with it:
// its state, its dir, its token at Vault, and the sandbox.
func (s *sbox) requireEnded(t *testing.T, si broker.SessionInfo, tok, mark string) {
	t.Helper()
	requireState(t, s.listAll(t), si.ID, "ended")
	requireGone(t, si.Dir)
	s.requireTokenRejected(t, tok)
	requireSandboxGone(t, si.ID, mark)
}

// requireSandboxGone checks that no container of the session exists and
// no process runs `sleep mark` (the agents' marker).
func requireSandboxGone(t *testing.T, id, mark string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := exec.LookPath("docker"); err == nil {
		out, err := exec.CommandContext(ctx, "docker", "ps", "--all", "--quiet", "--filter", "label="+sandbox.SessionLabel+"="+id).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "" {
			t.Errorf("containers of session %s still exist (docker ps: %v): %s", id, err, out)
		}
	}
	if mark == "" {
		return
	}
	if pids := sleepers(mark); len(pids) > 0 {
		t.Errorf("the agent (sleep %s) still runs after its session ended: pids %v", mark, pids)
	}
}

// newMark returns a number no other test sleeps for, so /proc shows which
// processes are this agent's.
func newMark() string { return strconv.Itoa(100000 + rand.IntN(800000)) }

// sleepers lists the pids running `sleep mark`.
func sleepers(mark string) []int {
	ents, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var pids []int
	for _, e := range ents {
		b, err := os.ReadFile(e)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 2 && filepath.Base(args[0]) == "sleep" && args[1] == mark {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(e))); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// lines parses the agent's "key: value" output lines.
func lines(out string) map[string]string {
	m := map[string]string{}
	for l := range strings.SplitSeq(out, "\n") {
		if k, v, ok := strings.Cut(l, ": "); ok {
			m[k] = v
		}
	}
	return m
}

// sandboxArgs runs `credbroker sandbox args -o json` and decodes it.
func (e *e2e) sandboxArgs(t *testing.T, args ...string) (argv, env []string) {
	t.Helper()
	r := e.mustCLI(t, append([]string{"sandbox", "args", "-o", "json"}, args...)...)
	var out struct {
		Argv []string `json:"argv"`
		Env  []string `json:"env"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("decode sandbox args: %v\n%s", err, r)
	}
	return out.Argv, out.Env
}

func mustContainSeq(t *testing.T, argv []string, seq ...string) {
	t.Helper()
	for i := 0; i+len(seq) <= len(argv); i++ {
		if fmt.Sprint(argv[i:i+len(seq)]) == fmt.Sprint(seq) {
			return
		}
	}
	t.Errorf("argv lacks %q:\n%q", seq, argv)
}

// runCmd runs a helper command (docker, compose) with a time limit.
func runCmd(name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}
