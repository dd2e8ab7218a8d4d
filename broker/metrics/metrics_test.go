package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
)

// testConfig has two roles, one with egress, and the Vault provider.
func testConfig() *configs.Config {
	return &configs.Config{
		Providers: configs.Providers{Vault: &configs.VaultProvider{Address: "http://127.0.0.1:8200"}},
		Roles: map[string]configs.Role{
			"agent-net": {Name: "agent-net", Vault: &configs.VaultRole{Policies: []string{"p"}}, Egress: &configs.Egress{Allow: []string{"a.test:443"}}},
			"agent-ro":  {Name: "agent-ro", Vault: &configs.VaultRole{Policies: []string{"p"}}},
		},
	}
}

// fixedState is a broker.StateReader with a set answer.
type fixedState struct {
	st  broker.MetricsState
	err error
}

func (f fixedState) MetricsState(context.Context) (broker.MetricsState, error) { return f.st, f.err }

// TestExporterCountsWhatItIsTold: each observer call lands in its series,
// and the series the config makes known start at zero.
func TestExporterCountsWhatItIsTold(t *testing.T) {
	e := New(testConfig())
	names := []string{"credbroker_session_starts_total", "credbroker_egress_connections_total",
		"credbroker_reconciler_orphans_found_total", "credbroker_audit_write_failures_total"}
	const zero = `
# HELP credbroker_audit_write_failures_total Audit records that could not be written to the audit log.
# TYPE credbroker_audit_write_failures_total counter
credbroker_audit_write_failures_total 0
# HELP credbroker_egress_connections_total Connections through the sessions' egress gateways, by role and decision (allow, deny).
# TYPE credbroker_egress_connections_total counter
credbroker_egress_connections_total{decision="allow",role="agent-net"} 0
credbroker_egress_connections_total{decision="deny",role="agent-net"} 0
# HELP credbroker_reconciler_orphans_found_total Credentials the reconciler found at a provider that the lease store did not know (a crash's leftovers), by provider.
# TYPE credbroker_reconciler_orphans_found_total counter
credbroker_reconciler_orphans_found_total{provider="vault"} 0
# HELP credbroker_session_starts_total Session starts by role and result (ok, refused: nothing minted, failed: what was minted was revoked) and reason (none, or the kind of error).
# TYPE credbroker_session_starts_total counter
credbroker_session_starts_total{reason="none",result="ok",role="agent-net"} 0
credbroker_session_starts_total{reason="none",result="ok",role="agent-ro"} 0
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(zero), names...); err != nil {
		t.Fatalf("before any event: %v", err)
	}
	e.SessionStart("agent-ro", broker.StartOK, "none")
	e.SessionStart("agent-ro", broker.StartOK, "none")
	e.SessionStart(broker.UnknownRole, broker.StartRefused, "unknown_role")
	e.SessionStart("agent-net", broker.StartFailed, "provider")
	e.EgressConn("agent-net", "allow")
	e.EgressConn("agent-net", "deny")
	e.EgressConn("agent-net", "deny")
	e.OrphansFound("vault", 3)
	e.AuditWriteFailed()
	const after = `
# HELP credbroker_audit_write_failures_total Audit records that could not be written to the audit log.
# TYPE credbroker_audit_write_failures_total counter
credbroker_audit_write_failures_total 1
# HELP credbroker_egress_connections_total Connections through the sessions' egress gateways, by role and decision (allow, deny).
# TYPE credbroker_egress_connections_total counter
credbroker_egress_connections_total{decision="allow",role="agent-net"} 1
credbroker_egress_connections_total{decision="deny",role="agent-net"} 2
# HELP credbroker_reconciler_orphans_found_total Credentials the reconciler found at a provider that the lease store did not know (a crash's leftovers), by provider.
# TYPE credbroker_reconciler_orphans_found_total counter
credbroker_reconciler_orphans_found_total{provider="vault"} 3
# HELP credbroker_session_starts_total Session starts by role and result (ok, refused: nothing minted, failed: what was minted was revoked) and reason (none, or the kind of error).
# TYPE credbroker_session_starts_total counter
credbroker_session_starts_total{reason="none",result="ok",role="agent-net"} 0
credbroker_session_starts_total{reason="none",result="ok",role="agent-ro"} 2
credbroker_session_starts_total{reason="provider",result="failed",role="agent-net"} 1
credbroker_session_starts_total{reason="unknown_role",result="refused",role="_unknown"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(after), names...); err != nil {
		t.Fatalf("after the events: %v", err)
	}
}

// TestExporterDurations: mint and revoke calls land in the bucket of their
// duration, by provider and result.
func TestExporterDurations(t *testing.T) {
	e := New(testConfig())
	e.Mint("vault", 30*time.Millisecond, true)
	e.Mint("vault", 3*time.Second, false)
	e.Revoke("vault", 7*time.Millisecond, true)
	const want = `
# HELP credbroker_mint_duration_seconds Duration of provider mint calls (one per provider per session start), by provider and result.
# TYPE credbroker_mint_duration_seconds histogram
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="0.005"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="0.01"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="0.025"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="0.05"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="0.1"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="0.25"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="0.5"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="1"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="2.5"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="5"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="10"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="30"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="60"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="error",le="+Inf"} 1
credbroker_mint_duration_seconds_sum{provider="vault",result="error"} 3
credbroker_mint_duration_seconds_count{provider="vault",result="error"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="0.005"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="0.01"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="0.025"} 0
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="0.05"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="0.1"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="0.25"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="0.5"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="1"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="2.5"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="5"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="10"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="30"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="60"} 1
credbroker_mint_duration_seconds_bucket{provider="vault",result="ok",le="+Inf"} 1
credbroker_mint_duration_seconds_sum{provider="vault",result="ok"} 0.03
credbroker_mint_duration_seconds_count{provider="vault",result="ok"} 1
`
	if err := testutil.GatherAndCompare(e.reg, strings.NewReader(want), "credbroker_mint_duration_seconds"); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(e.revoke); n != 1 {
		t.Fatalf("revoke histogram has %d series, want 1 (vault, ok)", n)
	}
}

// TestStateCollector: the gauges of what is live come from one state
// read, with a series for every configured role and provider, and a store
// that does not answer leaves only credbroker_store_up 0.
func TestStateCollector(t *testing.T) {
	st := broker.MetricsState{
		Roles: []string{"agent-net", "agent-ro"}, Providers: []string{"vault"},
		LiveSessions:       map[string]int{"agent-ro": 2, "retired-role": 1},
		ActiveLeases:       map[string]int{"vault": 5},
		PendingRevocations: map[string]int{"aws": 1},
		Incident:           true,
	}
	const want = `
# HELP credbroker_active_leases Leases of this broker (its sessions' and its own) that are active, by provider.
# TYPE credbroker_active_leases gauge
credbroker_active_leases{provider="aws"} 0
credbroker_active_leases{provider="vault"} 5
# HELP credbroker_incident_active 1 while an incident is declared (new sessions are refused), else 0.
# TYPE credbroker_incident_active gauge
credbroker_incident_active 1
# HELP credbroker_live_sessions Sessions of this broker that are starting or active, by role.
# TYPE credbroker_live_sessions gauge
credbroker_live_sessions{role="agent-net"} 0
credbroker_live_sessions{role="agent-ro"} 2
credbroker_live_sessions{role="retired-role"} 1
# HELP credbroker_revocations_pending Leases whose revocation failed and is being retried, by provider.
# TYPE credbroker_revocations_pending gauge
credbroker_revocations_pending{provider="aws"} 1
credbroker_revocations_pending{provider="vault"} 0
# HELP credbroker_store_up 1 if the lease store answered this scrape's queries, else 0 (and the session, lease and incident gauges are left out).
# TYPE credbroker_store_up gauge
credbroker_store_up 1
`
	if err := testutil.CollectAndCompare(newStateCollector(fixedState{st: st}), strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	const down = `
# HELP credbroker_store_up 1 if the lease store answered this scrape's queries, else 0 (and the session, lease and incident gauges are left out).
# TYPE credbroker_store_up gauge
credbroker_store_up 0
`
	failing := fixedState{st: st, err: errors.New("database is locked")}
	if err := testutil.CollectAndCompare(newStateCollector(failing), strings.NewReader(down)); err != nil {
		t.Fatalf("store down: %v", err)
	}
}

// TestMetricsPassLint: every family served, the Go and process collectors'
// too, passes client_golang's linter and the real `promtool check
// metrics`.
func TestMetricsPassLint(t *testing.T) {
	e := New(testConfig())
	e.Mint("vault", time.Millisecond, true)
	e.Revoke("vault", time.Millisecond, false)
	state := fixedState{st: broker.MetricsState{Roles: []string{"agent-ro"}, Providers: []string{"vault"},
		LiveSessions: map[string]int{"agent-ro": 1}, ActiveLeases: map[string]int{}, PendingRevocations: map[string]int{}}}
	live := prometheus.NewRegistry()
	live.MustRegister(newStateCollector(state))
	problems, err := testutil.GatherAndLint(prometheus.Gatherers{e.reg, live})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	srv := httptest.NewServer(e.Handler(state))
	defer srv.Close()
	body := scrape(t, srv.URL)
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (scripts/install-deps.sh does)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, want := range []string{"credbroker_live_sessions{role=\"agent-ro\"} 1", "go_goroutines ", "process_resident_memory_bytes "} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// scrape GETs url and returns the body, failing unless it is a 200.
func scrape(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, body)
	}
	return body
}
