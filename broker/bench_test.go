package broker_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// BenchmarkStartSession: one Vault-only session start (token through the
// token role as a child of the epoch, one KV v2 secret read with it, intent,
// leases recorded in SQLite, tmpfs dir written, audit record) against a real
// local Vault. The sessions are ended outside the timer.
func BenchmarkStartSession(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	ids := make([]string, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-readonly"})
		if err != nil {
			b.Fatal(err)
		}
		ids = append(ids, si.ID)
	}
	b.StopTimer()
	for _, id := range ids {
		if _, err := h.b.EndSession(ctx, h.caller, id, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEndSession: wipe the dir, revoke the token by accessor (Vault
// revokes its leases with it), update the store.
func BenchmarkEndSession(b *testing.B) {
	h := newHarness(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-readonly"})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := h.b.EndSession(ctx, h.caller, si.ID, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkStartSessionProxy starts Vault-only sessions with an egress
// gateway, against the same Vault in one run, interleaved: each op starts
// (timed) and ends (untimed) one session of each role, in an order that
// rotates per op, so a drift of the machine or of the servers' state
// during the run weighs on every role alike. The roles: "files" (file
// delivery), "proxy" (delivery: proxy, a role whose every destination the
// gateway terminates: its bundle holds only the session CA) and
// "proxy-roots" (the same, and it may also reach a relayed host, so its
// bundle holds the system roots too). It reports the median start of each
// (ms-files, ms-proxy, ms-proxy-roots); ns/op is the three starts.
func BenchmarkStartSessionProxy(b *testing.B) {
	h := newHarness(b, withProxyDelivery())
	ctx := context.Background()
	roles := []struct{ name, role string }{{"files", "agent-vault"}, {"proxy", "agent-vault-proxy"}, {"proxy-roots", "agent-vault-proxy-roots"}}
	took := make([][]time.Duration, len(roles))
	op := 0
	for b.Loop() {
		for k := range roles {
			i := (op + k) % len(roles)
			t0 := time.Now()
			si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: roles[i].role})
			took[i] = append(took[i], time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if _, err := h.b.EndSession(ctx, h.caller, si.ID, "bench"); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		op++
	}
	for i, r := range roles {
		slices.Sort(took[i])
		b.ReportMetric(float64(took[i][len(took[i])/2])/float64(time.Millisecond), "ms-"+r.name)
	}
}
