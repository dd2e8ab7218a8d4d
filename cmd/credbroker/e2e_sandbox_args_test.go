package main

// `credbroker sandbox args` (content, for every engine, with no engine
// needed), docker compose run for real, and `credbroker exec` refusing
// sessions it must not use, on the host and inside real sandboxes.

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
	"github.com/credbroker/credbroker/internal/secret"
)

// fakeSession writes a session dir with agentenv's writer (no daemon)
// under base/sessions and returns it; revoked marks it revoked.
func fakeSession(t *testing.T, base, id string, expires time.Time, uid int, revoked bool) string {
	t.Helper()
	w := &agentenv.Writer{Root: filepath.Join(base, "sessions")}
	m := agentenv.Meta{ID: id, Role: "agent-readonly", CreatedAt: expires.Add(-time.Hour), ExpiresAt: expires, UID: uid}
	dir, err := w.Create(m, map[string]secret.Value{"vault/token": secret.New("hvs.fake-session-token-not-real")},
		map[string]secret.Value{"VAULT_ADDR": secret.New("http://127.0.0.1:1")})
	if err != nil {
		t.Fatal(err)
	}
	if revoked {
		if err := w.MarkRevoked(id); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func randomID(prefix string) string { return fmt.Sprintf("s-%s%08x", prefix, rand.Uint32()) }

// TestSandboxArgs checks what `sandbox args` prints for every engine: the
// three mounts and nothing else, the session dir read-only, a non-root
// user, no privileges, no network, no host variable values; and what it
// refuses.
func TestSandboxArgs(t *testing.T) {
	t.Parallel()
	e := newE2EAt(t, nil, closedAddr(t))
	if err := os.Chmod(e.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := fakeSession(t, e.dir, randomID("args"), time.Now().Add(time.Hour), nobody, false)
	project := filepath.Join(e.dir, "project")
	if err := os.Mkdir(project, 0o755); err != nil {
		t.Fatal(err)
	}
	base := []string{"--session-dir", dir, "--project", project, "--keep-env", "ANTHROPIC_API_KEY"}
	cmd := []string{"--", "sh", "-c", "echo $HOME"}
	tail := []string{"exec", "--dir", "/run/credbroker", "--keep-env", "ANTHROPIC_API_KEY", "--", "sh", "-c", "echo $HOME"}
	secretValue := "sk-ant-host-value-never-printed"

	for _, engine := range []string{"docker", "podman"} {
		argv, _ := e.sandboxArgs(t, append(append([]string{"--engine", engine}, base...), cmd...)...)
		if argv[0] != engine || argv[1] != "run" {
			t.Fatalf("%s: argv starts %q", engine, argv[:2])
		}
		for _, seq := range [][]string{
			{"--rm"}, {"--init"}, {"--pull=never"}, {"--user", "65534:65534"}, {"--read-only"}, {"--cap-drop", "ALL"},
			{"--security-opt", "no-new-privileges"}, {"--network", "none"}, {"--env", "HOME=/tmp"}, {"--env", "ANTHROPIC_API_KEY"},
			{"--mount", "type=bind,src=" + dir + ",dst=/run/credbroker,readonly"},
			{"--mount", "type=bind,src=" + project + ",dst=/workspace"},
			{"--entrypoint", "/credbroker", "credbroker-sandbox:dev"}, tail,
		} {
			mustContainSeq(t, argv, seq...)
		}
		if n := strings.Count(strings.Join(argv, "\n"), "--mount"); n != 3 {
			t.Errorf("%s: %d mounts, want 3 (project, session dir, binary): %q", engine, n, argv)
		}
		for _, a := range argv {
			if a == "-v" || a == "--volume" || a == "--privileged" || strings.Contains(a, "docker.sock") || strings.Contains(a, secretValue) ||
				strings.HasPrefix(a, "--cap-add") || strings.Contains(a, os.Getenv("HOME")+"/") {
				t.Errorf("%s: argument %q must not be there", engine, a)
			}
		}
		if slices.Contains(argv, "--userns=keep-id") {
			t.Errorf("%s as root: --userns=keep-id is for rootless podman only", engine)
		}
	}

	// Rootless podman keeps the caller's uid inside, so the session dir's
	// owner is the agent.
	r := cliAs(t, e, nobody, append(append([]string{"sandbox", "args", "--engine", "podman", "-o", "json"}, base...), cmd...)...)
	if !strings.Contains(r, `"--userns=keep-id"`) {
		t.Errorf("rootless podman lacks --userns=keep-id:\n%s", r)
	}

	// bubblewrap: the same mounts, a read-only root, nothing shared.
	argv, env := e.sandboxArgs(t, append(append([]string{"--engine", "bwrap"}, base...), cmd...)...)
	for _, seq := range [][]string{
		{"bwrap", "--unshare-all", "--unshare-user"}, {"--uid", "65534", "--gid", "65534"}, {"--disable-userns"},
		{"--die-with-parent"}, {"--new-session"}, {"--cap-drop", "ALL"}, {"--tmpfs", "/tmp"},
		{"--ro-bind", dir, "/run/credbroker"}, {"--bind", project, "/workspace"}, {"--remount-ro", "/"},
		append([]string{"--", "/credbroker"}, tail...),
	} {
		mustContainSeq(t, argv, seq...)
	}
	if slices.Contains(argv, "--share-net") || !slices.Equal(env, []string{"HOME=/tmp", "PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin"}) {
		t.Errorf("bwrap: network shared or env %q", env)
	}
	host, _ := e.sandboxArgs(t, append(append([]string{"--engine", "bwrap", "--network", "host"}, base...), cmd...)...)
	mustContainSeq(t, host, "--unshare-all", "--unshare-user", "--share-net")
	text := e.mustCLI(t, append(append([]string{"sandbox", "args", "--engine", "bwrap"}, base...), cmd...)...).stdout
	if !strings.HasPrefix(text, "setpriv --reuid=65534 --regid=65534 --clear-groups env -i HOME=/tmp ") ||
		!strings.Contains(text, ` ANTHROPIC_API_KEY="$ANTHROPIC_API_KEY" bwrap `) || !strings.HasSuffix(text, "-- sh -c 'echo $HOME'\n") {
		t.Errorf("bwrap text output:\n%s", text)
	}

	checkComposeArgs(t, e, base, dir, project)

	for _, tc := range []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"RootOwnedDir", []string{"--session-dir", fakeSession(t, e.dir, randomID("root"), time.Now().Add(time.Hour), -1, false)}, exitUsage, "owned by root"},
		{"UIDRoot", []string{"--session-dir", dir, "--uid", "0"}, exitUsage, "never runs as root"},
		{"UnknownEngine", []string{"--engine", "lxc", "--session-dir", dir}, exitUsage, `engine "lxc"`},
		{"BwrapNetworkName", []string{"--engine", "bwrap", "--network", "mynet", "--session-dir", dir}, exitUsage, "bubblewrap can only"},
		{"ProjectIsHome", []string{"--session-dir", dir, "--project", filepath.Dir(project)}, exitUsage, "contains the home dir"},
		{"ProjectIsRoot", []string{"--session-dir", dir, "--project", "/"}, exitUsage, "whole host"},
		{"DynamicBinary", []string{"--session-dir", dir, "--exec-binary", "/usr/bin/ls"}, exitError, "dynamically linked"},
		{"NoSessionDir", []string{"--session-dir", filepath.Join(e.dir, "nope")}, exitUsage, "not a directory"},
		{"NoCommand", []string{"--session-dir", dir}, exitUsage, "give the command after --"},
	} {
		args := append([]string{"sandbox", "args"}, tc.args...)
		if tc.name != "NoCommand" {
			args = append(args, "--", "true")
		}
		r := e.run(t, runOpts{env: []string{"HOME=" + filepath.Dir(project)}}, args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("%s: want exit %d with %q: %s", tc.name, tc.code, tc.msg, r)
		}
	}
}

// checkComposeArgs parses the compose output and checks the service.
func checkComposeArgs(t *testing.T, e *e2e, base []string, dir, project string) {
	t.Helper()
	y := e.mustCLI(t, append(append([]string{"sandbox", "args", "--engine", "compose"}, base...), "--", "sh", "-c", "echo $HOME")...).stdout
	var f struct {
		Services map[string]map[string]any `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(y), &f); err != nil {
		t.Fatalf("compose output is not YAML: %v\n%s", err, y)
	}
	svc := f.Services["agent"]
	want := map[string]string{
		"image": "credbroker-sandbox:dev", "pull_policy": "never", "init": "true", "user": "65534:65534", "read_only": "true",
		"cap_drop": "[ALL]", "security_opt": "[no-new-privileges:true]", "network_mode": "none", "working_dir": "/workspace",
		"environment": "[HOME=/tmp ANTHROPIC_API_KEY]",
		"entrypoint":  "[/credbroker exec --dir /run/credbroker --keep-env ANTHROPIC_API_KEY --]",
		"command":     "[sh -c echo $$HOME]", // $$: compose must not interpolate the agent's $HOME
		"volumes": fmt.Sprint([]any{
			map[string]any{"type": "bind", "source": project, "target": "/workspace"},
			map[string]any{"type": "bind", "source": dir, "target": "/run/credbroker", "read_only": true},
			map[string]any{"type": "bind", "source": cbBin, "target": "/credbroker", "read_only": true},
		}),
	}
	for k, v := range want {
		if got := fmt.Sprint(svc[k]); got != v {
			t.Errorf("compose %s: %s, want %s", k, got, v)
		}
	}
	if len(svc) != len(want)+2 { // + tmpfs, labels
		t.Errorf("compose service has %d keys, want %d: %v", len(svc), len(want)+2, svc)
	}
}

// cliAs runs credbroker as another uid and returns its stdout.
func cliAs(t *testing.T, e *e2e, uid int, args ...string) string {
	t.Helper()
	cmd := exec.Command(cbBin, append([]string{"--config", e.config}, args...)...)
	cmd.Env = baseEnv("HOME=/nonexistent")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("credbroker %v as uid %d: %v\n%s", args, uid, err, out)
	}
	return string(out)
}

// TestSandboxCompose runs the compose recipe of docs/sandbox.md with the
// real compose tool: `session start -- sh -c 'credbroker sandbox args
// --engine compose ... > FILE && docker compose -f FILE run --rm agent'`.
// The agent reads and uses its credentials (network host), cannot change
// its session dir, keeps its own $HOME (compose interpolates nothing), and
// the session ends when compose returns.
func TestSandboxCompose(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "compose")
	s := newSandbox(t, "docker")
	compose, err := sandboxtest.ComposeCommand()
	if err != nil {
		t.Fatal(err)
	}
	agent := `echo "$CREDBROKER_SESSION_ID" > /workspace/ready
while [ ! -e /workspace/go ]; do sleep 0.1; done
echo "uid: $(id -u)"; echo "home: $HOME"
echo "token-sha: $(busybox sha256sum < /run/credbroker/vault/token | cut -d' ' -f1)"
if busybox wget -q -O- --header "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/secret/data/agent/readonly/config" | grep -q eu-west-1; then echo "vault-read: ok"; fi
if touch /run/credbroker/x 2>/dev/null; then echo "create: ALLOWED"; else echo "create: denied"; fi
if chmod 700 /run/credbroker 2>/dev/null; then echo "chmod: ALLOWED"; else echo "chmod: denied"; fi
env | grep -q -e AKIAHOSTSANDBOXKEY -e kept-on-host && echo "host-values: LEAKED"
exit 5`
	file := filepath.Join(s.dir, "compose.yaml")
	name := fmt.Sprintf("cbtest%08x", rand.Uint32())
	t.Cleanup(func() {
		_, _ = runCmd(compose[0], append(compose[1:], "-f", file, "-p", name, "down", "--remove-orphans")...)
	})
	recipe := `"$CB" sandbox args --engine compose --session-dir "$CREDBROKER_SESSION_DIR" --project "$PROJECT" --network host -- sh -c "$AGENT" > "$FILE" &&
$COMPOSE -f "$FILE" -p "$NAME" run --rm -T agent`
	env := append([]string{"HOME=" + s.home, "CB=" + cbBin, "PROJECT=" + s.project, "AGENT=" + agent, "FILE=" + file,
		"NAME=" + name, "COMPOSE=" + strings.Join(compose, " ")}, hostCreds...)
	p := s.start(t, "session start -- compose run", env, "session", "start", "--role", "agent-readonly", "--uid", fmt.Sprint(nobody),
		"--keep-env", "CB,PROJECT,AGENT,FILE,NAME,COMPOSE", "--", "sh", "-c", recipe)
	si, tok := s.session(t, p, "ready")
	if err := os.WriteFile(filepath.Join(s.project, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 2*time.Minute); code != 5 {
		t.Fatalf("exit status %d, want the agent's 5\nstdout:\n%s\nstderr:\n%s", code, p.stdout, p.stderr)
	}
	got := lines(p.stdout.String())
	sum := sha256.Sum256([]byte(tok))
	for k, v := range map[string]string{"uid": "65534", "home": "/tmp", "token-sha": hex.EncodeToString(sum[:]),
		"vault-read": "ok", "create": "denied", "chmod": "denied"} {
		if got[k] != v {
			t.Errorf("%s: %q, want %q\n%s", k, got[k], v, p.stdout)
		}
	}
	if _, leaked := got["host-values"]; leaked {
		t.Errorf("host variables reached the compose service")
	}
	s.requireEnded(t, si, tok, "")
}
