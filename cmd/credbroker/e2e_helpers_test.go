package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/providers/kube/kubetest"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// cbBin is the credbroker binary under test, built once by TestMain with
// -tags failpoints; cbDaemon, beside it, is credbroker-daemon built with
// -tags failpoints,daemon, which `credbroker serve` runs.
var cbBin, cbDaemon string

// e2eParallel is how many end-to-end tests run at once unless -parallel is
// given. Each runs a Vault dev server and a daemon that mostly wait (the
// ttl test waits 30s), so a little more than the 2 cores of the test
// machine keeps the run short without starving it.
const e2eParallel = 4

// brokerTokenEnv is the variable the test configs name in auth.token_env.
const brokerTokenEnv = "E2E_BROKER_VAULT_TOKEN"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "test.parallel" })
	if !explicit {
		_ = flag.Set("test.parallel", strconv.Itoa(e2eParallel))
	}
	dir, err := os.MkdirTemp("", "credbroker-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Static (CGO_ENABLED=0), as `make build` makes it, so the sandbox
	// tests can mount it into a FROM scratch image; its dir is 0755 so a
	// bubblewrap sandbox running as nobody can reach it.
	_ = os.Chmod(dir, 0o755)
	cbBin, cbDaemon = filepath.Join(dir, "credbroker"), filepath.Join(dir, "credbroker-daemon")
	for bin, tags := range map[string]string{cbBin: "failpoints", cbDaemon: "failpoints,daemon"} {
		build := exec.Command("go", "build", "-tags", tags, "-o", bin, ".")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", bin, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := kubetest.Main(m) // runs the tests, then stops the shared kube-apiserver
	os.RemoveAll(dir)
	os.Exit(code)
}

// e2e is one test's world: a Vault dev server (or none), a tmpfs dir with
// the config, runtime and state dirs, the daemons and CLI runs started, and
// every secret value seen, checked against every output at cleanup.
type e2e struct {
	srv        *vaulttest.Server // nil for tests without Vault
	dir        string
	config     string
	runtimeDir string
	stateDir   string

	mu      sync.Mutex
	secrets []string                   // values that must never appear in outputs
	outputs map[string]*syncbuf.Buffer // name → captured output
	procs   []*proc

	leaksChecked bool // the test ran checkNoLeaks itself at its end
}

// newE2E starts a seeded Vault dev server and writes a config for it.
func newE2E(t *testing.T) *e2e {
	t.Helper()
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	return newE2EAt(t, srv, srv.Addr)
}

// newE2EAt writes a config pointing at vaultAddr; srv may be nil.
func newE2EAt(t *testing.T, srv *vaulttest.Server, vaultAddr string) *e2e {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "credbroker-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Session dirs are 0500; make everything removable first.
		_ = exec.Command("chmod", "-R", "u+w", dir).Run()
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	e := &e2e{
		srv: srv, dir: dir, config: filepath.Join(dir, "config.yaml"),
		runtimeDir: filepath.Join(dir, "run"), stateDir: filepath.Join(dir, "state"),
		secrets: []string{vaulttest.RootToken}, outputs: map[string]*syncbuf.Buffer{},
	}
	e.writeConfig(t, e.config, e.runtimeDir, vaultAddr)
	t.Cleanup(func() {
		e.stopAll(t)
		if !e.leaksChecked {
			e.checkNoLeaks(t)
		}
	})
	return e
}

// writeConfig writes a config like configs/examples/config.yaml.
func (e *e2e) writeConfig(t *testing.T, path, runtimeDir, vaultAddr string) {
	t.Helper()
	cfg := fmt.Sprintf(`broker:
  socket: %s
  runtime_dir: %s
  state_dir: %s
  refresh_interval: 1s
store:
  driver: sqlite
providers:
  vault:
    address: %s
    auth:
      token_env: %s
    token_role: %s
    epoch_ttl: 24h
roles:
  agent-readonly:
    description: Read-only access to the agent's configuration.
    ttl: 15m
    max_ttl: 1h
    vault:
      policies: [agent-readonly]
      secrets:
        - name: config
          path: secret/data/agent/readonly/config
  agent-dev:
    description: Development access, with a short-lived TLS client certificate.
    ttl: 30m
    max_ttl: 2h
    vault:
      policies: [agent-dev]
      secrets:
        - name: config
          path: secret/data/agent/dev/config
        - name: tls-cert
          path: pki/issue/agent-dev
          method: write
          data:
            common_name: agent.credbroker.local
`, filepath.Join(runtimeDir, "broker.sock"), runtimeDir, e.stateDir, vaultAddr, brokerTokenEnv, vaulttest.TokenRole)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

// baseEnv is the test's environment without anything that could point a
// subprocess at another Vault or broker.
func baseEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "VAULT_") || strings.HasPrefix(k, "CREDBROKER_") || k == brokerTokenEnv {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// capture registers a buffer whose content is checked for secrets.
func (e *e2e) capture(name string) *syncbuf.Buffer {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := 2; e.outputs[name] != nil; i++ {
		name = fmt.Sprintf("%s #%d", strings.SplitN(name, " #", 2)[0], i)
	}
	b := &syncbuf.Buffer{}
	e.outputs[name] = b
	return b
}

// addSecret records a secret value that must not appear in any output.
func (e *e2e) addSecret(t *testing.T, v string) {
	t.Helper()
	if len(v) < 16 {
		t.Fatalf("secret value too short to be a credential: %d bytes", len(v))
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, v)
}

// proc is a credbroker process: the daemon or a CLI run in the background.
type proc struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr *syncbuf.Buffer
	done           chan struct{}
	code           int // exit code, -1 when killed by a signal; valid after done
}

func (e *e2e) start(t *testing.T, name string, env []string, args ...string) *proc {
	t.Helper()
	return e.startAs(t, name, nil, env, args...)
}

// startAs is start with the process's uid and gid set by cred (nil: ours).
func (e *e2e) startAs(t *testing.T, name string, cred *syscall.Credential, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.stdout = e.capture(name + " stdout")
	p.stderr = e.capture(name + " stderr")
	p.cmd = exec.Command(cbBin, append([]string{"--config", e.config}, args...)...)
	p.cmd.Env = baseEnv(env...)
	if cred != nil {
		p.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits for the process to exit; it fails the test after limit.
func (p *proc) wait(t *testing.T, limit time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(limit):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("%s did not exit within %s\nstdout:\n%s\nstderr:\n%s", p.name, limit, p.stdout, p.stderr)
		return -1
	}
}

// kill SIGKILLs the process, if still running, and waits for it.
func (p *proc) kill() {
	if !p.exited() {
		_ = p.cmd.Process.Kill()
	}
	<-p.done
}

// signal sends sig and waits for the exit.
func (p *proc) signal(t *testing.T, sig syscall.Signal, limit time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	return p.wait(t, limit)
}

// waitStderr waits until the process's stderr holds s.
func (p *proc) waitStderr(t *testing.T, s string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !strings.Contains(p.stderr.String(), s) {
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s: %q not on stderr (exited: %v):\n%s", p.name, s, p.exited(), p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serve starts the daemon with extra environment and waits until
// `credbroker status` answers.
func (e *e2e) serve(t *testing.T, env ...string) *proc {
	t.Helper()
	d := e.start(t, "daemon", append([]string{brokerTokenEnv + "=" + vaulttest.RootToken}, env...), "serve", "--log-level", "debug")
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.run(t, runOpts{quiet: true}, "status")
		if r.code == 0 {
			return d
		}
		if d.exited() || time.Now().After(deadline) {
			t.Fatalf("daemon not ready (exited: %v, code %d); last status: %s\ndaemon stderr:\n%s", d.exited(), d.code, r, d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stopAll stops every process still running: daemons gracefully first, so
// their logs are complete before the leak check reads them.
func (e *e2e) stopAll(t *testing.T) {
	e.mu.Lock()
	ps := append([]*proc(nil), e.procs...)
	e.mu.Unlock()
	for _, p := range ps {
		if p.exited() {
			continue
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s ignored SIGTERM for 10s; killing it", p.name)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
}

// result is a finished CLI run.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("`credbroker %s` exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

type runOpts struct {
	dir   string // working directory (default: the test's)
	env   []string
	quiet bool                // not kept for the leak check (readiness polling)
	cred  *syscall.Credential // run as this uid/gid (nil: ours)
}

// cli runs credbroker with args and --config, and returns its output.
func (e *e2e) cli(t *testing.T, args ...string) result {
	t.Helper()
	return e.run(t, runOpts{}, args...)
}

// mustCLI is cli that fails the test unless the exit status is 0.
func (e *e2e) mustCLI(t *testing.T, args ...string) result {
	t.Helper()
	r := e.cli(t, args...)
	if r.code != 0 {
		t.Fatalf("want exit 0: %s", r)
	}
	return r
}

func (e *e2e) run(t *testing.T, o runOpts, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, cbBin, append([]string{"--config", e.config}, args...)...)
	cmd.Env = baseEnv(o.env...)
	cmd.Dir = o.dir
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	if o.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: o.cred}
	}
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run credbroker %v: %v", args, err)
	}
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}
	if ctx.Err() != nil {
		t.Fatalf("timed out: %s", r)
	}
	if !o.quiet {
		name := "credbroker " + strings.Join(args, " ")
		_, _ = e.capture(name + " stdout").Write(stdout.Bytes())
		_, _ = e.capture(name + " stderr").Write(stderr.Bytes())
	}
	return r
}

// sessionToken reads a session dir's Vault token and records it as a
// secret; for agent-dev dirs the TLS private key is recorded too.
func (e *e2e) sessionToken(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "vault", "token"))
	if err != nil {
		t.Fatalf("read session token: %v", err)
	}
	tok := string(b)
	if !strings.HasPrefix(tok, "hvs.") {
		t.Fatalf("session token file holds %d bytes that do not look like a Vault token", len(tok))
	}
	e.addSecret(t, tok)
	if cert, err := os.ReadFile(filepath.Join(dir, "vault", "secrets", "tls-cert.json")); err == nil {
		const begin = "-----BEGIN RSA PRIVATE KEY-----\\n"
		_, key, ok := strings.Cut(string(cert), begin)
		if !ok || len(key) < 100 {
			t.Fatalf("tls-cert.json holds no private key")
		}
		e.addSecret(t, key[4:60]) // a run of base64 inside the key's first line
	}
	return tok
}

// checkNoLeaks fails the test when a recorded secret appears in the audit
// log, the lease store files, the daemon's output or any CLI output.
func (e *e2e) checkNoLeaks(t *testing.T) {
	t.Helper()
	hay := map[string][]byte{}
	e.mu.Lock()
	for name, b := range e.outputs {
		hay[name] = []byte(b.String())
	}
	secrets := append([]string(nil), e.secrets...)
	e.mu.Unlock()
	_ = filepath.WalkDir(e.stateDir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			b, rerr := os.ReadFile(path)
			if rerr != nil {
				t.Errorf("read %s: %v", path, rerr)
			}
			hay[path] = b
		}
		return nil
	})
	for name, b := range hay {
		for i, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("LEAK: secret #%d (of %d) appears in %s", i, len(secrets), name)
			}
		}
	}
}

// closedAddr is a Vault URL on a port nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// tokenClient is a Vault client using tok.
func (e *e2e) tokenClient(t *testing.T, tok string) *api.Client {
	t.Helper()
	c, err := e.srv.Client.Clone()
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(tok)
	return c
}

func vaultStatus(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// requireRead checks that tok reads path and the secret holds key=want.
func (e *e2e) requireRead(t *testing.T, tok, path, key, want string) {
	t.Helper()
	sec, err := e.tokenClient(t, tok).Logical().Read(path)
	if err != nil || sec == nil {
		t.Fatalf("read %s with the session token: %v (nil answer: %v)", path, err, sec == nil)
	}
	data, _ := sec.Data["data"].(map[string]any)
	if got := fmt.Sprint(data[key]); got != want {
		t.Fatalf("read %s: %s = %q, want %q", path, key, got, want)
	}
}

// requireDenied checks that tok may not read path (403).
func (e *e2e) requireDenied(t *testing.T, tok, path string) {
	t.Helper()
	_, err := e.tokenClient(t, tok).Logical().Read(path)
	if vaultStatus(err) != 403 {
		t.Fatalf("read %s with the session token: got %v, want 403 permission denied", path, err)
	}
}

// requireTokenValid checks that Vault accepts tok.
func (e *e2e) requireTokenValid(t *testing.T, tok string) {
	t.Helper()
	if _, err := e.tokenClient(t, tok).Auth().Token().LookupSelf(); err != nil {
		t.Fatalf("session token rejected, want valid: %v", err)
	}
}

// requireTokenRejected checks that Vault refuses tok (lookup-self 403).
func (e *e2e) requireTokenRejected(t *testing.T, tok string) {
	t.Helper()
	_, err := e.tokenClient(t, tok).Auth().Token().LookupSelf()
	if vaultStatus(err) != 403 {
		t.Fatalf("session token still usable: lookup-self gave %v, want 403", err)
	}
}

// accessors lists every token accessor Vault knows.
func (e *e2e) accessors(t *testing.T) map[string]bool {
	t.Helper()
	sec, err := e.srv.Client.Logical().List("auth/token/accessors")
	if err != nil || sec == nil {
		t.Fatalf("list token accessors: %v", err)
	}
	keys, _ := sec.Data["keys"].([]any)
	out := map[string]bool{}
	for _, k := range keys {
		out[fmt.Sprint(k)] = true
	}
	return out
}

// liveSessionTokens counts valid tokens that credbroker minted for a
// session (not its own epoch tokens).
func (e *e2e) liveSessionTokens(t *testing.T) int {
	t.Helper()
	n := 0
	for _, session := range e.liveTokens(t) {
		if strings.HasPrefix(session, "s-") {
			n++
		}
	}
	return n
}

// liveTokens maps the accessor of every valid token credbroker made (its
// own epochs included) to its credbroker_session metadata, asking Vault.
func (e *e2e) liveTokens(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for acc := range e.accessors(t) {
		sec, err := e.srv.Client.Auth().Token().LookupAccessor(acc)
		if err != nil {
			continue // revoked meanwhile
		}
		if meta, _ := sec.Data["meta"].(map[string]any); meta != nil && meta["credbroker_session"] != nil {
			out[acc] = fmt.Sprint(meta["credbroker_session"])
		}
	}
	return out
}

// eventually polls cond every interval until it holds or limit passes.
func eventually(limit, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval)
	}
}

// waitFile waits until path exists and is not empty, while p runs; it
// returns the content. A shell's `echo ... > file` creates the file before
// it writes the line (one write), so an empty file is not there yet.
func waitFile(t *testing.T, p *proc, path string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 {
			return string(b)
		}
		if p.exited() || time.Now().After(deadline) {
			t.Fatalf("%s never appeared (%s exited: %v)\nstdout:\n%s\nstderr:\n%s", path, p.name, p.exited(), p.stdout, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
