package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
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

	"github.com/credbroker/credbroker/broker/metrics/promtest"
	"github.com/credbroker/credbroker/internal/testbin"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/sqlite"
)

// TestE2EMetricsPrometheus: a real Prometheus scrapes the daemon's
// broker.metrics listener and its HTTP API answers with the values of
// what the test did: a crash's orphan found at restart, a session started
// and ended, two refused starts, a live session with egress connections
// allowed and denied, then an incident. The raw /metrics passes `promtool
// check metrics`, holds no session id, and the listener goes with the
// daemon.
func TestE2EMetricsPrometheus(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	webPort := metricsWorld(t, e)
	listen := metricsListen(t, e)

	// A crash after the mint leaves a Vault token the store does not know:
	// the next daemon's reconciler finds it.
	d := e.serve(t, "CREDBROKER_FAILPOINT=after-mint")
	c := e.start(t, "session start (crashed)", nil, "session", "start", "--role", "agent-readonly")
	d.waitStderr(t, "FAILPOINT after-mint", 30*time.Second)
	d.kill()
	c.kill()
	d = e.serve(t)
	prom := promtest.Start(t, listen)
	wait := func(expr string, want float64) {
		t.Helper()
		prom.WaitValue(t, expr, want, 20*time.Second)
	}
	wait(`up{job="credbroker"}`, 1)
	wait(`credbroker_reconciler_orphans_found_total{provider="vault"}`, 1)

	ro := e.startJSON(t, "--role", "agent-readonly")
	e.mustCLI(t, "session", "end", ro.ID)
	if r := e.cli(t, "session", "start", "--role", "no-such-role"); r.code != exitNotFound {
		t.Fatalf("start of an unknown role: want exit %d: %s", exitNotFound, r)
	}
	if r := e.cli(t, "session", "start", "--role", "agent-dev", "--ttl", "5h"); r.code != exitUsage {
		t.Fatalf("start above max_ttl: want exit %d: %s", exitUsage, r)
	}
	netSess := e.startJSON(t, "--role", "agent-net")
	if code := socksGet(t, netSess.EgressSocket, fmt.Sprintf("http://web.test:%d/", webPort)); code != 0 {
		t.Fatalf("curl through the gateway to an allowed host: exit %d", code)
	}
	if code := socksGet(t, netSess.EgressSocket, "http://denied.test/"); code != 97 {
		t.Fatalf("curl through the gateway to a denied host: exit %d, want 97 (SOCKS5 refused)", code)
	}

	starts := `credbroker_session_starts_total{role=%q,result=%q,reason=%q}`
	wait(fmt.Sprintf(starts, "agent-readonly", "ok", "none"), 1)
	wait(fmt.Sprintf(starts, "agent-net", "ok", "none"), 1)
	wait(fmt.Sprintf(starts, "_unknown", "refused", "unknown_role"), 1)
	wait(fmt.Sprintf(starts, "agent-dev", "refused", "bad_request"), 1)
	wait(fmt.Sprintf(starts, "agent-dev", "ok", "none"), 0)
	wait(`credbroker_live_sessions{role="agent-net"}`, 1)
	wait(`credbroker_live_sessions{role="agent-readonly"}`, 0)
	wait(`credbroker_egress_connections_total{role="agent-net",decision="allow"}`, 1)
	wait(`credbroker_egress_connections_total{role="agent-net",decision="deny"}`, 1)
	wait(`credbroker_mint_duration_seconds_count{provider="vault",result="ok"}`, 2)
	revoked, active := auditCount(t, e, "lease.revoke", "lease.orphan_revoked"), activeLeases(t, e, "vault")
	t.Logf("revocations audited: %d; active Vault leases in the store: %d", revoked, active)
	wait(`credbroker_revoke_duration_seconds_count{provider="vault",result="ok"}`, float64(revoked))
	wait(`credbroker_active_leases{provider="vault"}`, float64(active))
	wait(`credbroker_revocations_pending{provider="vault"}`, 0)
	wait(`credbroker_incident_active`, 0)
	wait(`credbroker_audit_write_failures_total`, 0)
	wait(`credbroker_store_up`, 1)
	wait(`count(go_goroutines{job="credbroker"})`, 1)
	wait(`count(process_resident_memory_bytes{job="credbroker"} > 0)`, 1)

	raw := getMetrics(t, listen)
	promtool(t, raw)
	for _, id := range []string{ro.ID, netSess.ID} {
		if bytes.Contains(raw, []byte(id)) {
			t.Errorf("/metrics holds session id %s", id)
		}
	}

	e.mustCLI(t, "revoke", "--all", "--reason", "metrics test")
	wait(`credbroker_incident_active`, 1)
	wait(`credbroker_live_sessions{role="agent-net"}`, 0)
	wait(`credbroker_active_leases{provider="vault"}`, float64(activeLeases(t, e, "vault")))
	e.mustCLI(t, "incident", "clear")
	wait(`credbroker_incident_active`, 0)

	if code := d.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM", code)
	}
	if conn, err := net.Dial("tcp", listen); err == nil {
		conn.Close()
		t.Fatalf("the metrics listener %s outlived the daemon", listen)
	}
	wait(`up{job="credbroker"}`, 0)
}

// metricsWorld adds the egress role agent-net (Vault, and web.test on a
// local web server) to e's config and returns the web server's port.
func metricsWorld(t *testing.T, e *e2e) uint16 {
	t.Helper()
	web := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "web ok") }))
	t.Cleanup(web.Close)
	port := netip.MustParseAddrPort(web.Listener.Addr().String()).Port()
	editConfig(t, e, func(cfg string) string {
		cfg = strings.Replace(cfg, "  refresh_interval: 1s\n", "  refresh_interval: 1s\n  egress:\n    hosts:\n      web.test: 127.0.0.1\n", 1)
		return cfg + fmt.Sprintf("  agent-net:\n    vault:\n      policies: [agent-readonly]\n    egress:\n      allow: [\"web.test:%d\"]\n", port)
	})
	return port
}

// metricsListen turns on broker.metrics on a free loopback port and
// returns the address.
func metricsListen(t *testing.T, e *e2e) string {
	t.Helper()
	port, err := testbin.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	editConfig(t, e, func(cfg string) string {
		return strings.Replace(cfg, "broker:\n", "broker:\n  metrics:\n    listen: "+listen+"\n", 1)
	})
	return listen
}

// editConfig rewrites e's config file with edit.
func editConfig(t *testing.T, e *e2e, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.config, []byte(edit(string(b))), 0o600); err != nil {
		t.Fatal(err)
	}
}

// socksGet fetches url with curl through a session's egress socket and
// returns curl's exit code.
func socksGet(t *testing.T, sock, url string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "curl", "-sS", "--noproxy", "", "--proxy", "socks5h://localhost"+sock, url).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	return 0
}

// getMetrics GETs /metrics from the daemon.
func getMetrics(t *testing.T, listen string) []byte {
	t.Helper()
	resp, err := http.Get("http://" + listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v\n%s", resp.StatusCode, err, body)
	}
	return body
}

// promtool runs `promtool check metrics` on raw, which must pass with no
// lint problem.
func promtool(t *testing.T, raw []byte) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (scripts/install-deps.sh does)")
	}
	cmd := exec.Command(bin, "check", "metrics")
	cmd.Stdin = bytes.NewReader(raw)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}

// auditCount counts the audit records of the given events.
func auditCount(t *testing.T, e *e2e, events ...string) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range events {
		n += strings.Count(string(b), `"event":"`+ev+`"`)
	}
	return n
}

// activeLeases counts provider's active leases in the daemon's store,
// read beside the daemon.
func activeLeases(t *testing.T, e *e2e, provider string) int {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(e.stateDir, "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls, err := st.ListLeasesByState(context.Background(), leases.LeaseActive)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range ls {
		if l.Provider == provider {
			n++
		}
	}
	return n
}
