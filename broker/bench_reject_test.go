package broker_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/sync/errgroup"
)

// The revoke benchmarks time revocation to the moment Vault rejects the
// tokens: a random sample of rejectSample tokens is polled with
// lookup-self (straight at Vault, not through the broker's proxy) by
// rejectPollers goroutines, each going round its share of the sample with
// a 1 ms pause between rounds, from the moment the revocation starts.
const (
	rejectSample  = 50
	rejectPollers = 5
	// rejectBound: a sampled token still valid this long after the
	// revocation started fails the benchmark.
	rejectBound = 5 * time.Minute
)

// rejection watches a sample of tokens while something revokes them.
type rejection struct {
	b     *testing.B
	go_   chan struct{}
	start time.Time
	last  atomic.Int64 // time after start the last sampled token was first seen rejected
	wg    sync.WaitGroup
	mu    sync.Mutex
	err   error
}

// watchRejection picks a random sample of toks, checks that each is valid
// now (so a rejection seen later is the revocation's doing) and readies
// the pollers; begin starts them and the clock.
func watchRejection(b *testing.B, h *harness, toks []string) *rejection {
	b.Helper()
	r := &rejection{b: b, go_: make(chan struct{})}
	idx := rand.Perm(len(toks))[:min(rejectSample, len(toks))]
	clients := make([]*api.Client, len(idx))
	for i, j := range idx {
		clients[i] = h.client(toks[j])
		valid, err := lookupSelf(clients[i])
		if err != nil || !valid {
			b.Fatalf("sampled token %d of %d is not valid before the revocation (err %v)", j, len(toks), err)
		}
	}
	for p := range rejectPollers {
		var mine []*api.Client
		for i := p; i < len(clients); i += rejectPollers {
			mine = append(mine, clients[i])
		}
		r.wg.Go(func() { <-r.go_; r.poll(mine) })
	}
	return r
}

// begin starts the clock and the pollers, and returns the start time.
func (r *rejection) begin() time.Time {
	r.start = time.Now()
	close(r.go_)
	return r.start
}

// poll asks Vault about each still-valid token of its share, round after
// round, until every one was rejected (or the bound passed).
func (r *rejection) poll(live []*api.Client) {
	for len(live) > 0 {
		if time.Since(r.start) > rejectBound {
			r.fail(fmt.Errorf("%d sampled tokens are still valid %v after the revocation started", len(live), rejectBound))
			return
		}
		next := live[:0]
		for _, c := range live {
			valid, err := lookupSelf(c)
			if err != nil {
				r.fail(err)
				return
			}
			if valid {
				next = append(next, c)
				continue
			}
			atomicMax(&r.last, int64(time.Since(r.start)))
		}
		live = next
		time.Sleep(time.Millisecond)
	}
}

func (r *rejection) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

// wait returns when every sampled token was seen rejected: the time from
// begin to the last first rejection. A token never rejected, or an
// unexpected answer from Vault, fails the benchmark.
func (r *rejection) wait() time.Duration {
	r.b.Helper()
	r.wg.Wait()
	if r.err != nil {
		r.b.Fatalf("waiting for Vault to reject the sampled tokens: %v", r.err)
	}
	return time.Duration(r.last.Load())
}

// lookupSelf reports whether Vault accepts the client's token: valid on
// success, rejected on 403 (permission denied); anything else is an error.
func lookupSelf(c *api.Client) (bool, error) {
	_, err := c.Auth().Token().LookupSelf()
	if err == nil {
		return true, nil
	}
	var re *api.ResponseError
	if errors.As(err, &re) && re.StatusCode == 403 {
		return false, nil
	}
	return false, fmt.Errorf("lookup-self: %w", err)
}

// assertAllRejected checks every token, not only the sample, 8 at a time.
func assertAllRejected(b *testing.B, h *harness, toks []string) {
	b.Helper()
	var (
		valid atomic.Int64
		g     errgroup.Group
	)
	g.SetLimit(8)
	for _, tok := range toks {
		c := h.client(tok)
		g.Go(func() error {
			ok, err := lookupSelf(c)
			if ok {
				valid.Add(1)
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	if n := valid.Load(); n != 0 {
		b.Fatalf("%d of %d tokens are still valid after the revocation", n, len(toks))
	}
}

func atomicMax(v *atomic.Int64, x int64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// msPer reports d over n iterations in milliseconds, for b.ReportMetric.
func msPer(d time.Duration, n int) float64 {
	return float64(d) / float64(time.Millisecond) / float64(n)
}
