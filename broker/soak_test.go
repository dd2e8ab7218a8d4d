//go:build soak

package broker_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// TestSoak starts and ends 2,000 sessions (8 at a time) against the real
// Vault and checks that goroutines and live heap come back to within 2
// goroutines and 8 MiB of their baseline.
// Behind the soak build tag: `make soak`.
func TestSoak(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	settle := func() (int, uint64) {
		for range 3 {
			runtime.GC()
			time.Sleep(200 * time.Millisecond)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), ms.HeapAlloc
	}
	// round starts and ends k sessions, 8 at a time.
	round := func(k int) {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for i := range k {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				role := []string{"agent-readonly", "agent-dev"}[i%2]
				si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: role})
				if err != nil {
					t.Error(err)
					return
				}
				if _, err := h.b.EndSession(ctx, h.caller, si.ID, "soak"); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
	}
	// Warm up with the same concurrency: the epoch, HTTP connection pools
	// (two goroutines per idle keep-alive connection) and caches fill here,
	// so the baseline already holds them.
	round(200)
	g0, heap0 := settle()
	const n = 2000
	start := time.Now()
	round(n)
	elapsed := time.Since(start)
	g1, heap1 := settle()
	t.Logf("%d sessions started and ended in %s (%.0f/s); goroutines %d -> %d; heap %d KiB -> %d KiB",
		n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds(), g0, g1, heap0>>10, heap1>>10)
	if g1 > g0+2 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if heap1 > heap0+8<<20 {
		t.Errorf("live heap grew from %d KiB to %d KiB", heap0>>10, heap1>>10)
	}
	if v := h.sessionTokens(); v != 0 {
		t.Errorf("%d session tokens still valid", v)
	}
}
