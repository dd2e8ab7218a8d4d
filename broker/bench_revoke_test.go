package broker_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// BenchmarkRevokeAll measures revoke --all with n live Vault sessions (role
// agent-readonly: one session token each, children of the broker's epoch
// token) against a real Vault. ns/op is the whole command (servers, dir
// wipes, store bookkeeping). From the start of the command:
//
//   - ms-returned: the providers' revoke-all calls returned (the broker's
//     own RevokedIn);
//   - ms-rejected: the last of a random sample of session tokens was seen
//     rejected by Vault (bench_reject_test.go; a sampled token never
//     rejected fails the benchmark, and every token is checked after);
//   - ms-dirs-wiped: every session dir was gone;
//   - ms-to-vault-call: the broker called the Vault provider's RevokeAll
//     (what comes before it: the incident lock, listing the store);
//   - epochs: the epoch tokens (Vault trees) recorded, one per 2,500
//     sessions.
//
// BenchmarkVaultRevoke10000/by-parent measures Vault's own tree revocation
// of as many tokens the same way, in the same run (scripts/bench.sh runs
// both in one go test). Setting up 10,000 sessions takes minutes on a
// loaded 2-core machine: run with -benchtime=1x.
func BenchmarkRevokeAll(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchRevokeAll(b, n) })
	}
}

func benchRevokeAll(b *testing.B, n int) {
	clock := &revokeAllClock{}
	h := newHarness(b, withRevokeAllClock(clock))
	ctx := context.Background()
	var returned, rejected, wiped, toCall time.Duration
	epochs := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		_ = h.b.ClearIncident(ctx, h.caller) // none on the first round
		checks := vaultChecks(h, tokens(h, startMany(b, h, n, "agent-readonly")))
		w := watchRejection(b, checks)
		ep, err := h.st.FindLeases(ctx, leases.LeaseFilter{BrokerOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		epochs += len(ep)
		start := w.begin()
		b.StartTimer()
		rep, err := h.b.RevokeAll(ctx, h.caller, "bench")
		b.StopTimer()
		if err != nil || !rep.Complete {
			b.Fatalf("revoke all: %+v %v", rep, err)
		}
		rejected += w.wait()
		returned += rep.RevokedIn
		wiped += rep.WipedIn
		toCall += time.Unix(0, clock.called.Load()).Sub(start)
		assertAllRejected(b, checks)
		b.StartTimer()
	}
	b.ReportMetric(msPer(returned, b.N), "ms-returned")
	b.ReportMetric(msPer(rejected, b.N), "ms-rejected")
	b.ReportMetric(msPer(wiped, b.N), "ms-dirs-wiped")
	b.ReportMetric(msPer(toCall, b.N), "ms-to-vault-call")
	b.ReportMetric(float64(epochs)/float64(b.N), "epochs")
}

// revokeAllClock wraps the Vault provider and notes when the broker calls
// its RevokeAll.
type revokeAllClock struct {
	providers.Provider
	called atomic.Int64 // Unix ns
}

func withRevokeAllClock(c *revokeAllClock) harnessOpt {
	return func(hc *harnessConfig) {
		hc.wrap = func(p providers.Provider) providers.Provider {
			if p.Name() != vault.Name {
				return p
			}
			c.Provider = p
			return c
		}
	}
}

// RevokeAll notes the time and calls the provider's.
func (c *revokeAllClock) RevokeAll(ctx context.Context, ls []leases.Lease) ([]string, error) {
	c.called.Store(time.Now().UnixNano())
	return c.Provider.RevokeAll(ctx, ls)
}

// startMany starts n sessions of role four at a time.
func startMany(b *testing.B, h *harness, n int, role string) []broker.SessionInfo {
	sis := make([]broker.SessionInfo, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			si, err := h.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: role})
			if err != nil {
				b.Error(err)
				return
			}
			sis[i] = si
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return sis
}

// tokens reads the sessions' Vault tokens from their dirs.
func tokens(h *harness, sis []broker.SessionInfo) []string {
	toks := make([]string, len(sis))
	for i, si := range sis {
		toks[i] = h.token(si)
	}
	return toks
}

// BenchmarkVaultRevoke10000: the same Vault, 10,000 tokens of the same kind
// (policy agent-readonly, through the same token role, children of one
// parent), revoked without credbroker, timed as BenchmarkRevokeAll is:
//
//   - by-parent: one revoke-accessor on their parent, Vault's own tree
//     revocation (the call credbroker makes on its epoch);
//   - by-4-parents: the tokens spread over 4 parents, whose trees are
//     revoked at once (4 revoke-accessor calls in parallel);
//   - one-by-one: revoke-accessor on each token, 8 in flight.
//
// ns/op and ms-returned are until the calls returned, ms-rejected until
// the last of a random sample of the tokens was seen rejected.
func BenchmarkVaultRevoke10000(b *testing.B) {
	const n = 10000
	for _, mode := range []struct {
		name    string
		parents int
	}{{"one-by-one", 1}, {"by-parent", 1}, {"by-4-parents", 4}} {
		b.Run(mode.name, func(b *testing.B) {
			h := newHarness(b)
			var returned, rejected time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				parents, toks, accs := childTokens(b, h, n, mode.parents)
				checks := vaultChecks(h, toks)
				w := watchRejection(b, checks)
				start := w.begin()
				b.StartTimer()
				if mode.name == "one-by-one" {
					revokeEach(b, h, accs)
				} else {
					revokeEach(b, h, parents)
				}
				returned += time.Since(start)
				if b.Failed() {
					b.FailNow()
				}
				b.StopTimer()
				rejected += w.wait()
				assertAllRejected(b, checks)
				b.StartTimer()
			}
			b.ReportMetric(msPer(returned, b.N), "ms-returned")
			b.ReportMetric(msPer(rejected, b.N), "ms-rejected")
		})
	}
}

// childTokens creates k parent tokens and n children spread evenly below
// them, 8 at a time, and returns the parents' accessors and the children's
// tokens and accessors.
func childTokens(b *testing.B, h *harness, n, k int) ([]string, []string, []string) {
	parents := make([]string, k)
	pcs := make([]*api.Client, k)
	for i := range k {
		sec, err := h.srv.Client.Auth().Token().Create(&api.TokenCreateRequest{TTL: "2h", DisplayName: "bench-parent"})
		if err != nil {
			b.Fatal(err)
		}
		parents[i] = sec.Auth.Accessor
		pcs[i] = h.client(sec.Auth.ClientToken)
	}
	toks := make([]string, n)
	accs := make([]string, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := pcs[i%k].Auth().Token().CreateWithRole(&api.TokenCreateRequest{Policies: []string{"agent-readonly"}, TTL: "1h"}, vaulttest.TokenRole)
			if err != nil {
				b.Error(err)
				return
			}
			toks[i], accs[i] = c.Auth.ClientToken, c.Auth.Accessor
		})
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	return parents, toks, accs
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
