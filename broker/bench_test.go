package broker_test

import (
	"context"
	"testing"

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

// BenchmarkStartSessionProxy starts a Vault-only session with an egress
// gateway, delivered as files and by proxy (a session CA, placeholders,
// the gateway's interceptor), against the same Vault in one run.
func BenchmarkStartSessionProxy(b *testing.B) {
	h := newHarness(b, withProxyDelivery())
	ctx := context.Background()
	for _, role := range []string{"agent-vault", "agent-vault-proxy"} {
		name := map[string]string{"agent-vault": "files", "agent-vault-proxy": "proxy"}[role]
		b.Run(name, func(b *testing.B) {
			// Each session is ended (outside the timer) before the next
			// starts, so both roles start against the same state: with the
			// sessions of one run left live and ended in a batch, the next
			// run met Vault still revoking them.
			for b.Loop() {
				si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: role})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if _, err := h.b.EndSession(ctx, h.caller, si.ID, "bench"); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}
