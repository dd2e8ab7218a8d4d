package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/forward/forwardtest"
	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
)

// egressWeb serves "egress-ok" on the host's loopback until the test ends.
func egressWeb(t *testing.T) (url, addr string) {
	t.Helper()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "egress-ok")
	}))
	t.Cleanup(web.Close)
	return web.URL, web.Listener.Addr().String()
}

// TestSandboxEgressBwrap: in a real bubblewrap sandbox started from the
// command line `sandbox args --egress-socket` prints, the agent has no
// network interface but loopback; `credbroker exec` starts the forwarder
// and sets the proxy variables (NO_PROXY from the host removed), so the
// real curl reaches a server on the host through the gateway socket, over
// HTTP and SOCKS5, and with --noproxy '*' cannot connect at all (neither
// to the host's server nor to the metadata address), nor resolve a name.
func TestSandboxEgressBwrap(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "bwrap")
	e := newE2EAt(t, nil, closedAddr(t))
	if err := os.Chmod(e.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := fakeSession(t, e.dir, randomID("egr"), time.Now().Add(time.Hour), nobody, false)
	gw := forwardtest.Start(t)
	url, addr := egressWeb(t)
	script := `echo "http: $HTTP_PROXY https=$https_proxy all=$ALL_PROXY no=${NO_PROXY-unset}/${no_proxy-unset}"
echo "via-http: $(curl -sS --max-time 20 ` + url + `/ 2>&1)"
echo "via-socks: $(curl -sS --max-time 20 --proxy "$ALL_PROXY" ` + url + `/ 2>&1)"
curl -sS --max-time 5 --noproxy '*' ` + url + `/ >/dev/null 2>&1; echo "direct: $?"
curl -sS --max-time 5 --noproxy '*' http://169.254.169.254/ >/dev/null 2>&1; echo "metadata: $?"
getent hosts example.com >/dev/null 2>&1; echo "dns: $?"
echo "ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"`
	line := e.mustCLI(t, "sandbox", "args", "--engine", "bwrap", "--session-dir", dir, "--egress-socket", gw.Socket,
		"--no-project", "--keep-env", "NO_PROXY", "--", "sh", "-c", script).stdout
	if !strings.Contains(line, "--ro-bind "+gw.Socket+" /run/credbroker-egress.sock") || strings.Contains(line, "--share-net") {
		t.Fatalf("sandbox args does not mount the socket into a network-less sandbox:\n%s", line)
	}
	cmd := exec.Command("sh", "-c", line)
	cmd.Env = baseEnv("NO_PROXY=*")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sandbox: %v\n%s", err, out)
	}
	got := lines(string(out))
	want := map[string]string{
		"http":      "http://127.0.0.1:3128 https=http://127.0.0.1:3128 all=socks5h://127.0.0.1:1080 no=unset/unset",
		"via-http":  "egress-ok",
		"via-socks": "egress-ok",
		"direct":    "7", // curl: could not connect
		"metadata":  "7", // no route: nothing leaves the namespace
		"dns":       "2", // getent: not found (no resolver reachable)
		"ifaces":    "lo,",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q\n%s", k, got[k], v, out)
		}
	}
	if n := strings.Count(strings.Join(gw.Seen(), " "), addr); n != 2 {
		t.Errorf("the gateway relayed %d connections to %s (saw %q), want 2: HTTP and SOCKS5", n, addr, gw.Seen())
	}
}

// TestSandboxEgressDocker: the same in a real Docker container (the FROM
// scratch busybox image) started from the printed command line: busybox
// wget follows http_proxy through the forwarder and the gateway socket to
// the host, and without the proxy (-Y off) cannot connect; the container
// has only lo. (No wget -T: Debian's static busybox crashes with it.)
func TestSandboxEgressDocker(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "docker")
	img := sandboxtest.Image(t)
	e := newE2EAt(t, nil, closedAddr(t))
	if err := os.Chmod(e.dir, 0o711); err != nil {
		t.Fatal(err)
	}
	dir := fakeSession(t, e.dir, randomID("egd"), time.Now().Add(time.Hour), nobody, false)
	gw := forwardtest.Start(t)
	url, addr := egressWeb(t)
	script := `echo "http: $http_proxy all=$ALL_PROXY no=${no_proxy-unset}"
echo "via-http: $(wget -q -O- ` + url + `/ 2>&1)"
wget -q -Y off -O- ` + url + `/ >/dev/null 2>&1; echo "direct: $?"
echo "ifaces: $(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)"`
	name := "credbroker-egress-" + newMark()
	line := e.mustCLI(t, "sandbox", "args", "--engine", "docker", "--image", img, "--name", name, "--session-dir", dir,
		"--egress-socket", gw.Socket, "--no-project", "--keep-env", "no_proxy", "--", "sh", "-c", script).stdout
	if !strings.Contains(line, "src="+gw.Socket+",dst=/run/credbroker-egress.sock,readonly") || !strings.Contains(line, "--network none") {
		t.Fatalf("sandbox args does not mount the socket into a network-less container:\n%s", line)
	}
	defer exec.Command("docker", "rm", "-f", name).Run()
	cmd := exec.Command("sh", "-c", line)
	cmd.Env = baseEnv("no_proxy=*")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sandbox: %v\n%s", err, out)
	}
	got := lines(string(out))
	want := map[string]string{
		"http":     "http://127.0.0.1:3128 all=socks5h://127.0.0.1:1080 no=unset",
		"via-http": "egress-ok",
		"direct":   "1",
		"ifaces":   "lo,",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q\n%s", k, got[k], v, out)
		}
	}
	if n := strings.Count(strings.Join(gw.Seen(), " "), addr); n != 1 {
		t.Errorf("the gateway relayed %d connections to %s (saw %q), want 1", n, addr, gw.Seen())
	}
}

// TestExecEgressForwarderEnds: `credbroker exec` on the host with a
// gateway socket starts the forwarder as a child of the agent (the
// process exec becomes); the forwarder relays while the agent runs and is
// gone soon after the agent ends, whether it exits or is SIGKILLed.
func TestExecEgressForwarderEnds(t *testing.T) {
	t.Parallel()
	e := newE2EAt(t, nil, closedAddr(t))
	dir := fakeSession(t, e.dir, randomID("fwd"), time.Now().Add(time.Hour), nobody, false)
	gw := forwardtest.Start(t)
	url, _ := egressWeb(t)
	for _, tc := range []struct {
		name string
		kill bool
	}{{"exit", false}, {"sigkill", true}} {
		t.Run(tc.name, func(t *testing.T) {
			script := `read -r kids < /proc/$$/task/$$/children
echo "kids=$kids"
echo "via=$(curl -sS --max-time 20 ` + url + `/ 2>&1)"`
			// The agent lives on until the test has looked at its child.
			if tc.kill {
				script += "\nexec sleep 60"
			} else {
				script += "\nread -r _"
			}
			cmd := exec.Command(cbBin, "exec", "--allow-writable", "--dir", dir, "--", "sh", "-c", script)
			cmd.Env = baseEnv("CREDBROKER_EGRESS_SOCKET=" + gw.Socket)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			// A file, not a pipe: a forwarder that outlived the agent
			// would hold a pipe open and hang Wait instead of failing.
			stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
			if err != nil {
				t.Fatal(err)
			}
			defer stderr.Close()
			cmd.Stderr = stderr
			cmd.WaitDelay = 5 * time.Second
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Process.Kill()
			got := map[string]string{}
			sc := bufio.NewScanner(stdout)
			for len(got) < 2 && sc.Scan() {
				k, v, _ := strings.Cut(sc.Text(), "=")
				got[k] = v
			}
			kids := strings.Fields(got["kids"])
			if len(kids) != 1 || got["via"] != "egress-ok" {
				msg, _ := os.ReadFile(stderr.Name())
				t.Fatalf("want one child (the forwarder) and a reply through it, got %q (stderr %s)", got, msg)
			}
			fwd, _ := strconv.Atoi(kids[0])
			if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", fwd)); !strings.Contains(string(cl), "egress-forward") {
				t.Fatalf("child %d is %q, not the forwarder", fwd, cl)
			}
			if tc.kill {
				cmd.Process.Kill()
			} else {
				stdin.Close()
			}
			cmd.Wait()
			deadline := time.Now().Add(3 * time.Second)
			for !procGone(fwd) {
				if time.Now().After(deadline) {
					syscall.Kill(fwd, syscall.SIGKILL)
					t.Fatalf("forwarder %d still running 3 s after the agent ended", fwd)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

// procGone reports whether pid has exited (no /proc entry, or a zombie).
func procGone(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) == 0 || slices.Contains([]string{"Z", "X"}, f[0])
}

// TestSandboxArgsEgressRefusesAndWarns: --egress-socket must name a Unix
// socket (a mistyped path would give a sandbox with no way out), and a
// sandbox with a network of its own is printed with a warning that the
// egress rules are then not enforced; on the host's network the socket is
// not even mounted (a forwarder there would listen on the host's loopback,
// open to every local user).
func TestSandboxArgsEgressRefusesAndWarns(t *testing.T) {
	t.Parallel()
	e := newE2EAt(t, nil, closedAddr(t))
	dir := fakeSession(t, e.dir, randomID("egw"), time.Now().Add(time.Hour), nobody, false)
	gw := forwardtest.Start(t)
	notSock := filepath.Join(e.dir, "not-a-socket")
	if err := os.WriteFile(notSock, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"sandbox", "args", "--engine", "docker", "--session-dir", dir, "--no-project"}
	for _, tc := range []struct {
		name, sock, network string
		code                int
		stderr              string
		mounted             bool
	}{
		{"not a socket", notSock, "none", exitUsage, "not a Unix socket", false},
		{"missing", filepath.Join(e.dir, "missing.sock"), "none", exitUsage, "no such file", false},
		{"host network", gw.Socket, "host", 0, "egress rules of the session's role are not enforced (its gateway socket is not mounted either", false},
		{"named network", gw.Socket, "agents_net", 0, "--network agents_net gives the sandbox a direct route out", true},
		{"no network", gw.Socket, "none", 0, "", true},
	} {
		r := e.cli(t, append(base, "--egress-socket", tc.sock, "--network", tc.network, "--", "true")...)
		if r.code != tc.code || (tc.stderr != "" && !strings.Contains(r.stderr, tc.stderr)) || (tc.stderr == "" && r.stderr != "") {
			t.Errorf("%s: want exit %d and stderr %q: %s", tc.name, tc.code, tc.stderr, r)
		}
		if r.code == 0 && strings.Contains(r.stdout, gw.Socket) != tc.mounted {
			t.Errorf("%s: socket mounted = %v, want %v:\n%s", tc.name, !tc.mounted, tc.mounted, r.stdout)
		}
	}
}
