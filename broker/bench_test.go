package broker_test

import (
	"context"
	"fmt"
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

// BenchmarkRevokeAll measures revoke --all with n live sessions, from the
// call until it returns; Vault revokes the epoch's token tree synchronously,
// so every session token is rejected by then (checked on a sample outside
// the timer). Run with -benchtime=Nx: setting up 1,000 sessions takes
// seconds per iteration.
func BenchmarkRevokeAll(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := newHarness(b)
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				_ = h.b.ClearIncident(ctx, h.caller) // none on the first round
				toks := make([]string, 0, n)
				for range n {
					si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-readonly"})
					if err != nil {
						b.Fatal(err)
					}
					toks = append(toks, h.token(si))
				}
				b.StartTimer()
				rep, err := h.b.RevokeAll(ctx, h.caller, "bench")
				b.StopTimer()
				if err != nil || !rep.Complete {
					b.Fatalf("revoke all: %+v %v", rep, err)
				}
				for _, tok := range []string{toks[0], toks[n/2], toks[n-1]} {
					if h.tokenValid(tok) {
						b.Fatal("a session token survived revoke --all")
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(n), "sessions")
		})
	}
}
