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

// The revoke benchmarks time revocation to the moment the server rejects
// the credentials: a random sample of rejectSample of them is polled (a
// Vault token with lookup-self, straight at Vault, not through the
// broker's proxy) by rejectPollers goroutines, each going round its share
// (5 credentials) with a 1 ms pause between rounds, from the moment the
// revocation starts. A credential's time is when the answer rejecting it
// came back: later than the rejection by at most one round.
const (
	rejectSample  = 50
	rejectPollers = 10
	// rejectBound: a sampled token still valid this long after the
	// revocation started fails the benchmark.
	rejectBound = 5 * time.Minute
)

// check asks the server whether one credential is still accepted: true
// when it is, false when the server rejects it, an error for any other
// answer.
type check func() (bool, error)

// rejection watches a sample of credentials while something revokes them.
type rejection struct {
	b       *testing.B
	started chan struct{}
	start   time.Time
	last    atomic.Int64 // time after start the last sampled token was first seen rejected
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
}

// watchRejection watches a random sample of checks (watchChecks).
func watchRejection(b *testing.B, checks []check) *rejection {
	b.Helper()
	idx := rand.Perm(len(checks))[:min(rejectSample, len(checks))]
	sample := make([]check, len(idx))
	for i, j := range idx {
		sample[i] = checks[j]
	}
	return watchChecks(b, sample)
}

// watchChecks checks that each credential is accepted now (so a rejection
// seen later is the revocation's doing) and readies the pollers; begin
// starts them and the clock.
func watchChecks(b *testing.B, checks []check) *rejection {
	b.Helper()
	r := &rejection{b: b, started: make(chan struct{})}
	for i, c := range checks {
		valid, err := c()
		if err != nil || !valid {
			b.Fatalf("sampled credential %d is not accepted before the revocation (err %v)", i, err)
		}
	}
	for p := range rejectPollers {
		var mine []check
		for i := p; i < len(checks); i += rejectPollers {
			mine = append(mine, checks[i])
		}
		r.wg.Go(func() { <-r.started; r.poll(mine) })
	}
	return r
}

// begin starts the clock and the pollers, and returns the start time.
func (r *rejection) begin() time.Time {
	r.start = time.Now()
	close(r.started)
	return r.start
}

// poll asks the server about each still-accepted credential of its share,
// round after round, until every one was rejected (or the bound passed).
func (r *rejection) poll(live []check) {
	for len(live) > 0 {
		if time.Since(r.start) > rejectBound {
			r.fail(fmt.Errorf("%d sampled credentials are still accepted %v after the revocation started", len(live), rejectBound))
			return
		}
		next := live[:0]
		for _, c := range live {
			valid, err := c()
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

// wait returns when every sampled credential was seen rejected: the time
// from begin to the last first rejection. One never rejected, or an
// unexpected answer from the server, fails the benchmark.
func (r *rejection) wait() time.Duration {
	r.b.Helper()
	r.wg.Wait()
	if r.err != nil {
		r.b.Fatalf("waiting for the server to reject the sampled credentials: %v", r.err)
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

// vaultChecks returns a lookup-self check per Vault token.
func vaultChecks(h *harness, toks []string) []check {
	checks := make([]check, len(toks))
	for i, tok := range toks {
		c := h.client(tok)
		checks[i] = func() (bool, error) { return lookupSelf(c) }
	}
	return checks
}

// assertAllRejected runs every check, not only the sample's, 8 at a time.
func assertAllRejected(b *testing.B, checks []check) {
	b.Helper()
	var (
		valid atomic.Int64
		g     errgroup.Group
	)
	g.SetLimit(8)
	for _, c := range checks {
		g.Go(func() error {
			ok, err := c()
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
		b.Fatalf("%d of %d credentials are still accepted after the revocation", n, len(checks))
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
