package main

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
	"github.com/credbroker/credbroker/broker"
)

// TestEgressTunnelClosedBwrap: a download in flight through the real chain
// (curl in bubblewrap, the forwarder, the session's gateway, a CONNECT
// tunnel to an allowed HTTPS server) stops when the session ends and when
// `revoke --all` is declared: the server sees its connection closed soon
// after the command started (logged as MEASURE, asserted loosely), and
// curl fails while the sandbox itself lives on (nothing but the gateway
// cut it: the sandbox was started from `sandbox args`, which nothing
// kills when the session ends).
func TestEgressTunnelClosedBwrap(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "bwrap")
	e := newE2E(t)
	ca := newTestCA(t)
	hp, srv := chainServer(t, "tls-ok", ca)
	e.egressConfig(t, "agent-net", nil, []string{fmt.Sprintf("%s:%d", chainHost, hp)}, "    vault:\n      policies: [agent-readonly]\n")
	e.serve(t)
	project := e.sandboxProject(t, filepath.Join(e.dir, "work"), map[string][]byte{"ca.pem": ca.PEM}, nil)
	script := fmt.Sprintf(`curl -sS --max-time 120 --cacert /workspace/ca.pem -o /dev/null https://%s:%d/slow 2>/dev/null; echo "curl: $?"
echo "alive: yes"`, chainHost, hp)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"session end", []string{"session", "end"}},
		{"revoke --all", []string{"revoke", "--all", "--reason", "egress tunnel test"}},
	} {
		var si broker.SessionInfo
		r := e.mustCLI(t, "session", "start", "--role", "agent-net", "--uid", strconv.Itoa(nobody), "-o", "json")
		if err := json.Unmarshal([]byte(r.stdout), &si); err != nil {
			t.Fatal(err)
		}
		line := e.mustCLI(t, "sandbox", "args", "--engine", "bwrap", "--session-dir", si.Dir, "--egress-socket", si.EgressSocket,
			"--project", project, "--", "sh", "-c", script).stdout
		cmd := exec.Command("sh", "-c", line)
		cmd.Env = baseEnv()
		out := e.capture("sandbox " + tc.name)
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-srv.started:
		case err := <-done:
			t.Fatalf("%s: the sandbox ended before its download started: %v\n%s", tc.name, err, out)
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s: the download never started\n%s", tc.name, out)
		}
		args := tc.args
		if tc.name == "session end" {
			args = append(args, si.ID)
		}
		start := time.Now()
		e.mustCLI(t, args...)
		returned := time.Since(start)
		select {
		case at := <-srv.closed:
			d := at.Sub(start)
			t.Logf("MEASURE egress tunnel closed %.1f ms after `credbroker %s` started (the command returned after %.1f ms)",
				float64(d.Microseconds())/1000, tc.name, float64(returned.Microseconds())/1000)
			if d > 2*time.Second {
				t.Errorf("%s: the tunnel closed %s after the command, want well under 2s", tc.name, d)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s: the download still runs 10 s after the command", tc.name)
		}
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("%s: the sandbox did not end after its download was cut\n%s", tc.name, out)
		}
		got := lines(out.String())
		if code, _ := strconv.Atoi(got["curl"]); code == 0 || got["alive"] != "yes" {
			t.Errorf("%s: want curl to fail (got %q) in a sandbox that lives on (alive %q)\n%s", tc.name, got["curl"], got["alive"], out)
		}
	}
}
