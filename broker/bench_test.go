package broker_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
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

// BenchmarkRevokeAll measures revoke --all with n live sessions against
// the real Vault. ns/op is the whole command (servers, dir wipes, store
// bookkeeping); ms-to-rejected is the time until Vault rejected every
// session token (checked on a sample outside the timer). Setting up 10,000
// sessions takes about a minute per iteration: run with -benchtime=1x.
func BenchmarkRevokeAll(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			h := newHarness(b)
			ctx := context.Background()
			var toRejected, wiped time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				_ = h.b.ClearIncident(ctx, h.caller) // none on the first round
				toks := startMany(b, h, n)
				b.StartTimer()
				rep, err := h.b.RevokeAll(ctx, h.caller, "bench")
				b.StopTimer()
				if err != nil || !rep.Complete {
					b.Fatalf("revoke all: %+v %v", rep, err)
				}
				toRejected += rep.RevokedIn
				wiped += rep.WipedIn
				for _, tok := range []string{toks[0], toks[n/2], toks[n-1]} {
					if h.tokenValid(tok) {
						b.Fatal("a session token survived revoke --all")
					}
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(toRejected.Milliseconds())/float64(b.N), "ms-to-rejected")
			b.ReportMetric(float64(wiped.Milliseconds())/float64(b.N), "ms-to-dirs-wiped")
		})
	}
}

// startMany starts n sessions four at a time and returns their tokens.
func startMany(b *testing.B, h *harness, n int) []string {
	toks := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			si, err := h.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: "agent-readonly"})
			if err != nil {
				b.Error(err)
				return
			}
			toks[i] = h.token(si)
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return toks
}

// BenchmarkVaultRevoke10000 compares, on the same Vault, the two ways to
// revoke 10,000 tokens without credbroker: one by one by accessor (8 at a
// time) and by revoking their common parent (what credbroker's epoch does).
func BenchmarkVaultRevoke10000(b *testing.B) {
	const n = 10000
	for _, mode := range []string{"one-by-one", "by-parent"} {
		b.Run(mode, func(b *testing.B) {
			h := newHarness(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				parent, accs := childTokens(b, h, n)
				b.StartTimer()
				if mode == "by-parent" {
					if _, err := h.srv.Client.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": parent}); err != nil {
						b.Fatal(err)
					}
				} else {
					revokeEach(b, h, accs)
				}
			}
		})
	}
}

func childTokens(b *testing.B, h *harness, n int) (string, []string) {
	sec, err := h.srv.Client.Auth().Token().Create(&api.TokenCreateRequest{TTL: "2h", DisplayName: "bench-parent"})
	if err != nil {
		b.Fatal(err)
	}
	pc, _ := h.srv.Client.Clone()
	pc.SetToken(sec.Auth.ClientToken)
	accs := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := pc.Auth().Token().CreateWithRole(&api.TokenCreateRequest{Policies: []string{"agent-readonly"}, TTL: "1h"}, vaulttest.TokenRole)
			if err != nil {
				b.Error(err)
				return
			}
			accs[i] = c.Auth.Accessor
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return sec.Auth.Accessor, accs
}

func revokeEach(b *testing.B, h *harness, accs []string) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for _, a := range accs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if _, err := h.srv.Client.Logical().Write("auth/token/revoke-accessor", map[string]any{"accessor": a}); err != nil {
				b.Error(err)
			}
		})
	}
	wg.Wait()
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
			var ids []string
			for b.Loop() {
				si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: role})
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
		})
	}
}
