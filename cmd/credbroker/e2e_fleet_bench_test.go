package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/credbroker/credbroker/broker"
)

// BenchmarkFleetRevokeAll: three broker containers with 1,000 live
// sessions each (Vault role agent-readonly: one session token each),
// sharing PostgreSQL and Vault; revoke --all on one of them. Reported, from
// the moment the revoke-all request is sent:
//
//   - ms-first-remote-wipe: the first session dir gone on another broker
//     (the incident's propagation through PostgreSQL LISTEN/NOTIFY);
//   - ms-last-dir: the last session dir gone on any of the three hosts;
//   - ms-tokens-rejected: Vault rejects every session token (the longer of
//     the revoking broker's own measure and a sample of tokens, one per
//     100 sessions, polled; all 3,000 are checked afterwards);
//   - ms-revoke-call: the revoke --all request itself.
//
// Setting up 3,000 sessions takes about a minute: run with -benchtime=1x.
func BenchmarkFleetRevokeAll(b *testing.B) {
	const perBroker = 1000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		benchFleetRevokeAll(b, perBroker)
	}
}

func benchFleetRevokeAll(b *testing.B, perBroker int) {
	w := newFleetWorld(b)
	w.refresh = "5s" // the default
	brokers := w.startBrokers("fleet-a", "fleet-b", "fleet-c")
	ctx := context.Background()
	setup := time.Now()
	type started struct {
		b     *fleetBroker
		dir   string
		token string
	}
	var (
		mu  sync.Mutex
		all []started
	)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(6)
	for _, br := range brokers {
		c := br.client()
		for range perBroker {
			g.Go(func() error {
				si, err := c.StartSession(gctx, broker.StartRequest{Role: "agent-readonly"})
				if err != nil {
					return err
				}
				tok, err := os.ReadFile(filepath.Join(br.hostPath(si.Dir), "vault", "token"))
				if err != nil {
					return err
				}
				mu.Lock()
				all = append(all, started{br, br.hostPath(si.Dir), string(tok)})
				mu.Unlock()
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		b.Fatalf("start sessions: %v", err)
	}
	b.Logf("%d sessions started on %d brokers in %v", len(all), len(brokers), time.Since(setup).Round(time.Second))

	// Watch every host's sessions dir and a sample of tokens while the
	// revoke-all runs.
	var (
		start           = time.Now()
		firstRemoteWipe atomic.Int64
		lastDir         atomic.Int64
		sampleRejected  atomic.Int64
		watch           sync.WaitGroup
	)
	for _, br := range brokers {
		root := filepath.Join(br.dir, "run", "sessions")
		remote := br != brokers[0]
		watch.Go(func() {
			for {
				n := countDirs(root)
				el := int64(time.Since(start))
				if remote && n < perBroker {
					firstRemoteWipe.CompareAndSwap(0, el)
				}
				if n == 0 {
					atomicMax(&lastDir, el)
					return
				}
				if time.Since(start) > 5*time.Minute {
					b.Errorf("%s still has %d session dirs after 5 minutes", br.name, n)
					return
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	for i := 0; i < len(all); i += 100 {
		s := all[i]
		watch.Go(func() {
			fs := fleetSession{b: s.b, token: s.token}
			for fs.tokenValid() {
				if time.Since(start) > 5*time.Minute {
					b.Errorf("a sampled token is valid 5 minutes after revoke --all")
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
			atomicMax(&sampleRejected, int64(time.Since(start)))
		})
	}
	b.StartTimer()
	rep, err := brokers[0].client().RevokeAll(ctx, "fleet benchmark")
	call := time.Since(start)
	b.StopTimer()
	if err != nil || !rep.Complete {
		b.Fatalf("revoke --all: %v (%+v)", err, rep)
	}
	watch.Wait()

	// Every token, not only the sample.
	var valid atomic.Int64
	g, _ = errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, s := range all {
		g.Go(func() error {
			if (fleetSession{b: s.b, token: s.token}).tokenValid() {
				valid.Add(1)
			}
			return nil
		})
	}
	_ = g.Wait()
	if n := valid.Load(); n != 0 {
		b.Fatalf("%d of %d session tokens are still valid", n, len(all))
	}
	tokens := max(time.Duration(sampleRejected.Load()), rep.RevokedIn)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(time.Duration(firstRemoteWipe.Load())), "ms-first-remote-wipe")
	b.ReportMetric(ms(time.Duration(lastDir.Load())), "ms-last-dir")
	b.ReportMetric(ms(tokens), "ms-tokens-rejected")
	b.ReportMetric(ms(call), "ms-revoke-call")
	b.Logf("revoking broker: servers %v, its own %d dirs %v, whole command %s; sampled tokens rejected by %v",
		rep.RevokedIn, rep.LocalSessions, rep.WipedIn, rep.Duration, time.Duration(sampleRejected.Load()))
}

// countDirs counts the session dirs under root (temporary entries aside).
func countDirs(root string) int {
	ents, err := os.ReadDir(root)
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if e.IsDir() && len(e.Name()) > 2 && e.Name()[:2] == "s-" {
			n++
		}
	}
	return n
}

func atomicMax(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}
