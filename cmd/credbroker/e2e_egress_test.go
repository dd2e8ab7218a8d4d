package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// TestE2EEgressGateway: the real daemon serves a session's egress socket;
// the real curl reaches an allowed server by a broker.egress.hosts name
// and is refused elsewhere; status counts; the gateway comes back after a
// daemon restart and goes away with the session; each connection is one
// audit record.
func TestE2EEgressGateway(t *testing.T) {
	e := newE2E(t)
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "web ok") }))
	defer web.Close()
	port := netip.MustParseAddrPort(web.Listener.Addr().String()).Port()
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(cfg), "  refresh_interval: 1s\n", "  refresh_interval: 1s\n  egress:\n    hosts:\n      web.test: 127.0.0.1\n", 1)
	text += fmt.Sprintf("  agent-net:\n    vault:\n      policies: [agent-readonly]\n    egress:\n      allow: [\"web.test:%d\"]\n", port)
	if err := os.WriteFile(e.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e.serve(t)

	var si broker.SessionInfo
	if err := json.Unmarshal([]byte(e.mustCLI(t, "session", "start", "--role", "agent-net", "-o", "json").stdout), &si); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(e.runtimeDir, "egress", si.ID+".sock"); si.EgressSocket != want {
		t.Fatalf("egress_socket %q, want %q", si.EgressSocket, want)
	}
	curl := func(url string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--noproxy", "", "--proxy", "socks5h://localhost"+si.EgressSocket, url).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return string(out), 0
	}
	allowed := fmt.Sprintf("http://web.test:%d/?token=querysecret", port)
	if out, code := curl(allowed); code != 0 || out != "web ok" {
		t.Fatalf("curl allowed: exit %d %q", code, out)
	}
	if out, code := curl("http://denied.test/"); code != 97 {
		t.Errorf("curl denied: exit %d %q, want 97 (SOCKS5 refused)", code, out)
	}
	st := e.mustCLI(t, "status")
	counts := ""
	for line := range strings.Lines(st.stdout) {
		if f := strings.Fields(line); len(f) == 5 && f[0] == si.ID {
			counts = strings.Join(f[1:4], " ") // allowed denied open
		}
	}
	if !strings.Contains(st.stdout, "egress gateways (1)") || counts != "1 1 0" {
		t.Errorf("status does not show the counts (got %q):\n%s", counts, st.stdout)
	}

	// A restarted daemon serves the live session's gateway again.
	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("daemon exit %d", code)
	}
	if _, err := os.Lstat(si.EgressSocket); !os.IsNotExist(err) {
		t.Errorf("socket left by a stopped daemon: %v", err)
	}
	e.serve(t)
	if out, code := curl(allowed); code != 0 || out != "web ok" {
		t.Fatalf("curl after restart: exit %d %q", code, out)
	}
	e.mustCLI(t, "session", "end", si.ID)
	if _, err := os.Lstat(si.EgressSocket); !os.IsNotExist(err) {
		t.Errorf("socket left after session end: %v", err)
	}
	if _, code := curl(allowed); code == 0 {
		t.Errorf("curl through an ended session's socket worked")
	}

	log, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), `"event":"egress.connection"`); n != 3 {
		t.Errorf("%d egress.connection records, want 3", n)
	}
	if strings.Contains(string(log), "querysecret") {
		t.Errorf("the audit log holds a query string")
	}
	e.mustCLI(t, "audit", "verify")
}
