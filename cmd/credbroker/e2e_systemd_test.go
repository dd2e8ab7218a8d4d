package main

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// The systemd tests: the daemon started by Debian's real
// systemd-socket-activate and used with the CLI, the sd_notify messages
// seen on a notify socket the test listens on, and the system unit's
// capabilities as the only ones the daemon has. The units themselves are
// checked with systemd-analyze in e2e_systemd_units_test.go.

// startCmd starts bin as one of e's processes: stopped at cleanup, its
// output checked for secrets.
func (e *e2e) startCmd(t *testing.T, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, done: make(chan struct{})}
	p.stdout = e.capture(name + " stdout")
	p.stderr = e.capture(name + " stderr")
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = baseEnv(env...)
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

// socketActivate runs `systemd-socket-activate <listen...> credbroker
// serve`: it binds the sockets, and on the first connection execs the
// daemon with them as fds 3... and LISTEN_PID/LISTEN_FDS set. It passes on
// only the variables named with -E; the Vault token goes by name, never
// on a command line.
func (e *e2e) socketActivate(t *testing.T, env []string, listen ...string) *proc {
	t.Helper()
	bin, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Fatalf("systemd-socket-activate not found (Debian's systemd package; make testbins installs it): %v", err)
	}
	env = append(env, brokerTokenEnv+"="+vaulttest.RootToken)
	args := append([]string{"-E", "PATH"}, listen...)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		args = append(args, "-E", k)
	}
	args = append(args, cbBin, "--config", e.config, "serve", "--log-level", "debug")
	return e.startCmd(t, "systemd-socket-activate", env, bin, args...)
}

// waitSocket waits until p has bound the Unix socket path.
func waitSocket(t *testing.T, p *proc, path string) {
	t.Helper()
	ok := eventually(10*time.Second, 20*time.Millisecond, func() bool {
		st, err := os.Lstat(path)
		return (err == nil && st.Mode().Type() == os.ModeSocket) || p.exited()
	})
	if !ok || p.exited() {
		t.Fatalf("%s did not bind %s (exited: %v)\nstderr:\n%s", p.name, path, p.exited(), p.stderr)
	}
}

func TestE2ESystemdSocketActivation(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	if err := os.MkdirAll(e.runtimeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(e.runtimeDir, "broker.sock")
	notifyPath, msgs := notifySocket(t, e.dir)
	d := e.socketActivate(t, []string{"NOTIFY_SOCKET=" + notifyPath}, "-l", sock)
	waitSocket(t, d, sock)

	// The first connection starts the daemon, and is answered by it.
	if r := e.cli(t, "status"); r.code != 0 {
		t.Fatalf("the connection that activated the daemon was not served: %s\ndaemon stderr:\n%s", r, d.stderr)
	}
	nextNotify(t, msgs, "READY=1", 10*time.Second)
	d.waitStderr(t, "using the socket systemd passed", 5*time.Second)
	if strings.Contains(d.stderr.String(), "remove stale socket") {
		t.Errorf("the daemon made a socket of its own:\n%s", d.stderr)
	}
	// systemd-socket-activate binds it 0644 (umask 022); the daemon narrows
	// it to what it would have made itself.
	if st, err := os.Stat(sock); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("activated socket mode: %v (err %v), want 0600", st.Mode().Perm(), err)
	}

	si := e.startJSON(t, "--role", "agent-readonly")
	tok := e.sessionToken(t, si.Dir)
	e.requireTokenValid(t, tok)
	e.requireRead(t, tok, readonlyPath, "region", "eu-west-1")
	e.mustCLI(t, "session", "end", si.ID)
	e.requireTokenRejected(t, tok)
	if _, err := os.Stat(si.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("session dir still there after end: %v", err)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	nextNotify(t, msgs, "STOPPING=1", 15*time.Second)
	if code := d.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM, want 0\nstderr:\n%s", code, d.stderr)
	}
}

// TestE2ESystemdSocketActivationRefused: sockets the daemon must not serve
// on are refused at start-up with an error that says what to change.
func TestE2ESystemdSocketActivationRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		listen  []string // SOCK is broker.socket's path, OTHER another
		network string   // of the connection that activates the daemon
		poke    string   // where it goes
		want    string
	}{
		{"another path than broker.socket", []string{"-l", "OTHER"}, "unix", "OTHER", "but broker.socket is"},
		{"a datagram socket", []string{"--datagram", "-l", "SOCK"}, "unixgram", "SOCK", "is not a listening Unix stream socket"},
		{"two sockets", []string{"-l", "SOCK", "-l", "OTHER"}, "unix", "SOCK", "systemd passed 2 sockets, want 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newE2EAt(t, nil, closedAddr(t))
			if err := os.MkdirAll(e.runtimeDir, 0o700); err != nil {
				t.Fatal(err)
			}
			paths := strings.NewReplacer("SOCK", filepath.Join(e.runtimeDir, "broker.sock"), "OTHER", filepath.Join(e.dir, "other.sock"))
			var listen []string
			for _, a := range tt.listen {
				listen = append(listen, paths.Replace(a))
			}
			d := e.socketActivate(t, nil, listen...)
			poke := paths.Replace(tt.poke)
			waitSocket(t, d, poke)
			dialOnce(t, tt.network, poke)
			if code := d.wait(t, 30*time.Second); code == 0 {
				t.Fatalf("daemon exited 0, want a refusal\nstderr:\n%s", d.stderr)
			}
			if !strings.Contains(d.stderr.String(), "socket activation: ") || !strings.Contains(d.stderr.String(), tt.want) {
				t.Fatalf("daemon stderr lacks %q:\n%s", tt.want, d.stderr)
			}
		})
	}
}

// dialOnce connects to (or sends one datagram to) a socket and closes.
func dialOnce(t *testing.T, network, path string) {
	t.Helper()
	c, err := net.Dial(network, path)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, path, err)
	}
	if network == "unixgram" {
		_, _ = c.Write([]byte("x"))
	}
	c.Close()
}
