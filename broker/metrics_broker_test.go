package broker_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/metrics"
)

// withMetrics makes m observe the harness's broker.
func withMetrics(m broker.Metrics) harnessOpt { return func(c *harnessConfig) { c.metrics = m } }

// TestMetricsFollowTheBroker: against a real Vault and store, the
// exporter sees a start that failed after its mint, a start refused for a
// role not in the config, a revocation that failed while Vault was down
// (pending, then retried), and the live gauges follow the store.
func TestMetricsFollowTheBroker(t *testing.T) {
	exp := metrics.New(nil)
	h := newHarness(t, withMetrics(exp))
	srv := httptest.NewServer(exp.Handler(h.b))
	defer srv.Close()
	ctx := context.Background()

	si := h.start("agent-readonly")
	if _, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-broken"}); !errors.Is(err, broker.ErrProvider) {
		t.Fatalf("start agent-broken: %v, want ErrProvider", err)
	}
	if _, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "x-" + si.ID}); !errors.Is(err, broker.ErrUnknownRole) {
		t.Fatalf("start of an unknown role: %v", err)
	}
	wantLines(t, scrapeText(t, srv.URL), si.ID,
		`credbroker_live_sessions{role="agent-readonly"} 1`,
		`credbroker_live_sessions{role="agent-dev"} 0`,
		`credbroker_session_starts_total{reason="none",result="ok",role="agent-readonly"} 1`,
		`credbroker_session_starts_total{reason="provider",result="failed",role="agent-broken"} 1`,
		`credbroker_session_starts_total{reason="unknown_role",result="refused",role="_unknown"} 1`,
		`credbroker_mint_duration_seconds_count{provider="vault",result="ok"} 1`,
		`credbroker_mint_duration_seconds_count{provider="vault",result="error"} 1`,
		`credbroker_revocations_pending{provider="vault"} 0`,
		`credbroker_incident_active 0`,
		`credbroker_store_up 1`,
	)

	h.proxy.SetUp(false)
	if _, err := h.b.EndSession(ctx, h.caller, si.ID, "vault down"); !errors.Is(err, broker.ErrPending) {
		t.Fatalf("end with Vault down: %v, want ErrPending", err)
	}
	wantLines(t, scrapeText(t, srv.URL), si.ID,
		`credbroker_live_sessions{role="agent-readonly"} 0`,
		`credbroker_revocations_pending{provider="vault"} 1`,
		`credbroker_revoke_duration_seconds_count{provider="vault",result="error"} 1`,
	)
	h.proxy.SetUp(true)
	h.offset.Store(int64(3e9)) // past the first backoff
	h.b.Tick(ctx)
	wantLines(t, scrapeText(t, srv.URL), si.ID, `credbroker_revocations_pending{provider="vault"} 0`)
}

// scrapeText GETs url/metrics.
func scrapeText(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return string(b)
}

// wantLines checks that text has each line and never the session id.
func wantLines(t *testing.T, text, sessionID string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains("\n"+text, "\n"+l+"\n") {
			t.Errorf("/metrics lacks the line %s", l)
		}
	}
	if strings.Contains(text, sessionID) {
		t.Errorf("/metrics holds session id %s", sessionID)
	}
	if t.Failed() {
		t.Fatalf("/metrics:\n%s", text)
	}
}
