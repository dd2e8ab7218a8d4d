package broker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// countingStore counts the writes of a session start and can fail the
// lease transaction.
type countingStore struct {
	leases.Store
	mu         sync.Mutex
	calls      map[string]int
	intents    int // intents written by BeginSession
	sets       int // lease sets written by RecordLeaseSets
	failLeases atomic.Bool
}

func (c *countingStore) count(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[name]++
}

func (c *countingStore) n(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[name]
}

func (c *countingStore) CreateSession(ctx context.Context, s leases.Session) error {
	c.count("CreateSession")
	return c.Store.CreateSession(ctx, s)
}

func (c *countingStore) PutIntent(ctx context.Context, in leases.Intent) error {
	c.count("PutIntent")
	return c.Store.PutIntent(ctx, in)
}

func (c *countingStore) RecordLeases(ctx context.Context, intentID string, ls []leases.Lease) error {
	c.count("RecordLeases")
	return c.Store.RecordLeases(ctx, intentID, ls)
}

func (c *countingStore) BeginSession(ctx context.Context, s leases.Session, ins []leases.Intent) error {
	c.count("BeginSession")
	c.mu.Lock()
	c.intents += len(ins)
	c.mu.Unlock()
	return c.Store.(leases.Batcher).BeginSession(ctx, s, ins)
}

func (c *countingStore) RecordLeaseSets(ctx context.Context, sets []leases.LeaseSet) error {
	c.count("RecordLeaseSets")
	if c.failLeases.Load() {
		return errors.New("injected: the lease transaction failed")
	}
	c.mu.Lock()
	c.sets += len(sets)
	c.mu.Unlock()
	return c.Store.(leases.Batcher).RecordLeaseSets(ctx, sets)
}

func (c *countingStore) DeleteLeases(ctx context.Context, ids []string) error {
	return c.Store.(leases.Batcher).DeleteLeases(ctx, ids)
}

func (c *countingStore) FinishSessions(ctx context.Context, ids []string, reason string, at time.Time) ([]string, error) {
	return c.Store.(leases.Batcher).FinishSessions(ctx, ids, reason, at)
}

// perItemStore hides the store's leases.Batcher: the broker falls back to
// one call per provider.
type perItemStore struct{ leases.Store }

// intentChecker checks, at each mint, that the intents of every provider
// of the session are already in the store (durability rule 1), and can
// fail revocations (a start whose cleanup fails, as if it crashed).
type intentChecker struct {
	providers.Provider
	st         func() leases.Store
	want       int
	failRevoke *atomic.Bool
	bad        atomic.Int32
}

func (p *intentChecker) Mint(ctx context.Context, s providers.Session, role configs.Role) (providers.Grant, error) {
	ins, err := p.st().ListIntents(ctx)
	n := 0
	for _, in := range ins {
		if in.SessionID == s.ID {
			n++
		}
	}
	if err != nil || n != p.want {
		p.bad.Add(1)
	}
	return p.Provider.Mint(ctx, s, role)
}

func (p *intentChecker) Revoke(ctx context.Context, l leases.Lease) error {
	if p.failRevoke.Load() {
		return errors.New("injected: revoke failed")
	}
	return p.Provider.Revoke(ctx, l)
}

// startCase is a harness for agent-all (Vault, AWS, Kubernetes) whose
// broker store counts its writes; batch false hides its leases.Batcher.
type startCase struct {
	h          *harness
	cs         *countingStore
	spies      map[string]*spy
	checkers   []*intentChecker
	failRevoke atomic.Bool
}

func newStartCase(t *testing.T, batch bool) *startCase {
	c := &startCase{spies: map[string]*spy{}}
	store := func(st leases.Store) leases.Store {
		c.cs = &countingStore{Store: st, calls: map[string]int{}}
		if !batch {
			return perItemStore{c.cs}
		}
		return c.cs
	}
	wrap := func(p providers.Provider) providers.Provider {
		s := &spy{Provider: p}
		c.spies[p.Name()] = s
		ic := &intentChecker{Provider: s, st: func() leases.Store { return c.cs.Store }, want: 3, failRevoke: &c.failRevoke}
		c.checkers = append(c.checkers, ic)
		return ic
	}
	c.h = newHarness(t, withMinIO(), withKube(), func(hc *harnessConfig) { hc.store, hc.wrap = store, wrap })
	return c
}

// TestStartCommitsOnceBeforeAndOnceAfter: a three-provider start writes
// the session and its three intents in one transaction before the first
// mint, and the three providers' leases in one transaction after; a store
// without leases.Batcher gets one call per provider instead.
func TestStartCommitsOnceBeforeAndOnceAfter(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch bool
		want  map[string]int
	}{
		{"batch", true, map[string]int{"BeginSession": 1, "RecordLeaseSets": 1, "CreateSession": 0, "PutIntent": 0, "RecordLeases": 0}},
		{"per-item", false, map[string]int{"BeginSession": 0, "RecordLeaseSets": 0, "CreateSession": 1, "PutIntent": 3, "RecordLeases": 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newStartCase(t, tc.batch)
			h := c.h
			si := h.start("agent-all")
			for name, want := range tc.want {
				if got := c.cs.n(name); got != want {
					t.Errorf("%s called %d times for one start, want %d", name, got, want)
				}
			}
			if tc.batch && (c.cs.intents != 3 || c.cs.sets != 3) {
				t.Errorf("the transactions held %d intents and %d lease sets, want 3 and 3", c.cs.intents, c.cs.sets)
			}
			for _, ic := range c.checkers {
				if ic.bad.Load() != 0 {
					t.Errorf("%s was asked to mint before the intents of all three providers were stored", ic.Name())
				}
			}
			ctx := context.Background()
			if in, _ := h.st.ListIntents(ctx); len(in) != 0 {
				t.Errorf("intents left after the start: %v", in)
			}
			ls, err := h.st.ListLeases(ctx, si.ID)
			if err != nil || len(ls) != len(si.Leases) || len(ls) < 3 {
				t.Errorf("store holds %d leases of the session (%v), the start reported %d", len(ls), err, len(si.Leases))
			}
			if _, err := h.b.EndSession(ctx, h.caller, si.ID, "test over"); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestStartLeaseCommitLostIntentsSettle: the lease transaction of a
// three-provider start fails and so does the revocation of what was
// minted (as if the broker had died between the two transactions): the
// start fails closed, the three intents stay, and the reconciler finds and
// revokes every credential through them.
func TestStartLeaseCommitLostIntentsSettle(t *testing.T) {
	c := newStartCase(t, true)
	h, ctx := c.h, context.Background()
	c.cs.failLeases.Store(true)
	c.failRevoke.Store(true)
	_, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-all"})
	if !errors.Is(err, broker.ErrStoreUnavailable) {
		t.Fatalf("start with the lease transaction failing: %v; want ErrStoreUnavailable", err)
	}
	for name, s := range c.spies {
		if len(s.grants) == 0 {
			t.Fatalf("%s minted nothing: the test proves nothing", name)
		}
	}
	in, err := h.st.ListIntents(ctx)
	if err != nil || len(in) != 3 {
		t.Fatalf("intents after the failed lease transaction: %v (%v); want the three of the start", in, err)
	}
	c.cs.failLeases.Store(false)
	c.failRevoke.Store(false)
	if err := h.b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	h.assertAllDead(c.spies, "after reconcile")
	h.assertStoreSettled("after reconcile", true)
}
