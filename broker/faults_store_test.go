package broker_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/syncbuf"
	"github.com/credbroker/credbroker/internal/toxitest"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/vault"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// storeLatency is below the store's per-call bound (10 s): starts must
// succeed, slowly.
const storeLatency = time.Second

// tickLimit is how long one loop tick may take while the store is away:
// its store calls each give up within the store's bound.
const tickLimit = 90 * time.Second

// storeFault is a fault between the broker and PostgreSQL, with how long a
// refused start may take under it.
type storeFault struct {
	fault
	failWithin time.Duration
}

var storeFaults = []storeFault{
	{fault: fault{
		name:  "latency",
		set:   func(t testing.TB, p *toxitest.Proxy) { p.AddToxic(t, toxitest.Latency("downstream", storeLatency)) },
		clear: func(t testing.TB, p *toxitest.Proxy) { p.RemoveToxic(t, toxitest.Latency("downstream", 0).Name) },
	}},
	// A black hole: a store call gives up after the store's own bound (10
	// s), not TCP's minutes.
	{fault: faultNamed("blackhole"), failWithin: 20 * time.Second},
	// PostgreSQL acts on each query and its answer is lost.
	{fault: faultNamed("reset"), failWithin: 5 * time.Second},
	// The proxy disabled for a full minute: connection refused.
	{fault: faultNamed("down"), failWithin: 5 * time.Second},
}

// faultNamed returns TestFaults' fault called name.
func faultNamed(name string) fault {
	for _, f := range faults {
		if f.name == name {
			return f
		}
	}
	panic("no fault " + name)
}

// TestStoreFaults puts a real Toxiproxy between a fleet-mode broker and its
// PostgreSQL lease store and, for each fault, checks that a session start
// fails closed with ErrStoreUnavailable (nothing minted at Vault) within a
// bound, or under latency succeeds; that session end and revoke --all still
// revoke at Vault; and that once the fault is gone a few ticks bring the
// store up to date (sessions ended, no lease, no intent, the incident
// recorded), with nothing valid at Vault and no secret in any error or log.
//
// The cases run at once, each with its own Vault, database and Toxiproxy
// (one PostgreSQL cluster for all): the one-minute outage sets the time.
func TestStoreFaults(t *testing.T) {
	t.Setenv("CB_TEST_BROKER_TOKEN", vaulttest.RootToken)
	pg := pgtest.Start(t, pgtest.Options{})
	var wg sync.WaitGroup
	for _, sf := range storeFaults {
		// Not t.Parallel: -parallel (GOMAXPROCS) would serialise the
		// cases, and the environment is set above for all of them.
		wg.Go(func() { t.Run(sf.name, func(t *testing.T) { runStoreFault(t, pg, sf) }) })
	}
	wg.Wait()
}

// storeCase is one case: a broker whose store DSN points at the proxy.
type storeCase struct {
	f     *fleet
	n     *node
	proxy *toxitest.Proxy
	pw    string // the PostgreSQL password, which nothing may show
	// before is how many tokens of this broker Vault held before the fault.
	before int
}

func runStoreFault(t *testing.T, pg *pgtest.Cluster, sf storeFault) {
	c := newStoreCase(t, pg, nil)
	f, n, h := c.f, c.n, c.f.h
	ended, tokEnded := f.start(n) // ended under the fault
	held, tokHeld := f.start(n)   // revoked by revoke --all under the fault
	// The broker's epoch token (the two session tokens' parent) counts
	// too: it is this host's, not leases.BrokerSessionID.
	c.before = h.sessionTokens()
	if c.before != 3 {
		t.Fatalf("%d session tokens at Vault before the fault, want 3 (2 sessions and the epoch)", c.before)
	}
	live := []string{ended.ID, held.ID}

	sf.set(t, c.proxy)
	setAt := time.Now()
	if si, ok := c.startDuringFault(sf); ok {
		live = append(live, si.ID)
	}
	c.endDuringFault(sf, ended, tokEnded)
	c.revokeAllDuringFault(sf, held, tokHeld)
	if sf.breaks {
		c.tickDuringFault(sf.name, setAt.Add(sf.hold))
	}

	sf.clear(t, c.proxy)
	ticks, took := c.tickUntilCaughtUp(live, 30*time.Second)
	t.Logf("MEASURE store/%s: store caught up %s (%d ticks) after the fault was removed", sf.name, took.Round(time.Millisecond), ticks)
	if got := h.sessionTokens(); got != 0 {
		t.Errorf("%d session tokens valid at Vault after the store caught up, want 0", got)
	}
	for i, tok := range h.tokens {
		if h.tokenValid(tok) {
			t.Errorf("session token #%d is valid at Vault after the store caught up", i)
		}
	}
	c.assertNoSecrets()
}

// startDuringFault starts a session under the fault: refused (fails
// closed) or, under latency, started slowly; it reports whether it started.
func (c *storeCase) startDuringFault(sf storeFault) (broker.SessionInfo, bool) {
	t, h := c.f.t, c.f.h
	t.Helper()
	si, took, err := timed(t, "session start", func() (broker.SessionInfo, error) {
		return c.n.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: "agent-readonly"})
	})
	msg := c.note(err)
	if sf.breaks {
		c.assertStartRefused(err, msg, took, sf.failWithin)
		t.Logf("MEASURE store/%s: session start failed in %s: %s", sf.name, took.Round(time.Millisecond), msg)
		return si, false
	}
	if err != nil {
		t.Fatalf("start under %s latency: %s; want success", storeLatency, msg)
	}
	if took < storeLatency {
		t.Errorf("start took %s under %s latency per answer: was the fault on?", took, storeLatency)
	}
	t.Logf("MEASURE store/%s: session start succeeded in %s", sf.name, took.Round(time.Millisecond))
	h.token(si)
	return si, true
}

// endDuringFault ends session si under the fault: it is revoked at Vault
// and its dir wiped, even when the store cannot record it.
func (c *storeCase) endDuringFault(sf storeFault, si broker.SessionInfo, tok string) {
	t, h := c.f.t, c.f.h
	t.Helper()
	_, took, err := timed(t, "session end", func() (broker.SessionInfo, error) {
		return c.n.b.EndSession(context.Background(), h.caller, si.ID, "ended during a store fault")
	})
	t.Logf("MEASURE store/%s: session end returned in %s", sf.name, took.Round(time.Millisecond))
	c.assertOffline("session end", c.note(err), err, sf.breaks)
	if h.tokenValid(tok) || !dirGone(si.Dir) {
		t.Errorf("session end during the fault left the token valid (asked of Vault) or the dir on disk")
	}
}

// revokeAllDuringFault runs revoke --all under the fault: every token of
// the broker is revoked at Vault, even when the store cannot record it.
func (c *storeCase) revokeAllDuringFault(sf storeFault, si broker.SessionInfo, tok string) {
	t, h := c.f.t, c.f.h
	t.Helper()
	_, took, err := timed(t, "revoke --all", func() (broker.RevokeReport, error) {
		return c.n.b.RevokeAll(context.Background(), h.caller, "store fault test")
	})
	t.Logf("MEASURE store/%s: revoke --all returned in %s", sf.name, took.Round(time.Millisecond))
	c.assertOffline("revoke --all", c.note(err), err, sf.breaks)
	if h.tokenValid(tok) || !dirGone(si.Dir) {
		t.Errorf("revoke --all during the fault left a token valid (asked of Vault) or a dir on disk")
	}
	if got := h.sessionTokens(); got != 0 {
		t.Errorf("%d session tokens valid at Vault after revoke --all during the fault, want 0", got)
	}
}

// newStoreCase starts a Vault and a database for one case, and a broker
// (host "a") reaching the database through a Toxiproxy proxy; wrap, if
// not nil, wraps its Vault provider.
func newStoreCase(t *testing.T, pg *pgtest.Cluster, wrap func(providers.Provider) providers.Provider) *storeCase {
	t.Helper()
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	db := pg.NewDB(t)
	f := &fleet{t: t, srv: srv, pg: pg, db: db, nodes: map[string]*node{}, wrap: wrap}
	f.h = &harness{t: t, srv: srv, logs: &syncbuf.Buffer{}, caller: broker.Caller{UID: os.Geteuid(), PID: os.Getpid()}}
	tp := toxitest.Start(t)
	c := &storeCase{f: f, pw: db.Password}
	c.proxy = tp.Proxy(t, "postgres", db.Host+":"+strconv.Itoa(db.Port))
	host, port, _ := strings.Cut(c.proxy.Listen, ":")
	via := db.At(host)
	via.Port, _ = strconv.Atoi(port)
	c.n = f.newNodeAt("a", via.DSN())
	f.nodes["a"] = c.n
	return c
}

// timed is bounded (a call that never returns fails the test) that also
// reports how long the call took.
func timed[T any](t *testing.T, what string, call func() (T, error)) (T, time.Duration, error) {
	t.Helper()
	began := time.Now()
	v, err := bounded(t, what, call)
	return v, time.Since(began), err
}

// assertStartRefused checks a start during the fault: ErrStoreUnavailable
// within limit, and asked of Vault directly, no new session token.
func (c *storeCase) assertStartRefused(err error, msg string, took, limit time.Duration) {
	t := c.f.t
	t.Helper()
	if !errors.Is(err, broker.ErrStoreUnavailable) {
		t.Fatalf("start during the fault: %s; want ErrStoreUnavailable", msg)
	}
	if took > limit {
		t.Errorf("start took %s to fail; want within %s", took, limit)
	}
	if got := c.f.h.sessionTokens(); got != c.before {
		t.Errorf("%d session tokens at Vault after the refused start, want the %d from before", got, c.before)
	}
	if ids, _ := c.n.w.List(); len(ids) != 2 {
		t.Errorf("session dirs after the refused start: %v; want the 2 from before", ids)
	}
}

// assertOffline checks what an end or revoke --all returned: nil when the
// store answers (slowly), else ErrPending and ErrStoreUnavailable.
func (c *storeCase) assertOffline(what, msg string, err error, breaks bool) {
	t := c.f.t
	t.Helper()
	if !breaks && err != nil {
		t.Errorf("%s under latency: %s; want success", what, msg)
	}
	if breaks && (!errors.Is(err, broker.ErrPending) || !errors.Is(err, broker.ErrStoreUnavailable)) {
		t.Errorf("%s during the fault: %s; want ErrPending and ErrStoreUnavailable", what, msg)
	}
}

// tickDuringFault runs the loop every second while the fault holds (at
// least once): each tick must return, bounded by the store's own limits,
// and starts stay refused.
func (c *storeCase) tickDuringFault(name string, until time.Time) {
	t := c.f.t
	t.Helper()
	ctx := context.Background()
	var slowest time.Duration
	for ticks := 0; ticks == 0 || time.Now().Before(until); ticks++ {
		_, took, _ := timed(t, "tick", func() (struct{}, error) { c.n.b.Tick(ctx); return struct{}{}, nil })
		slowest = max(slowest, took)
		time.Sleep(time.Second)
	}
	if slowest > tickLimit {
		t.Errorf("a tick during the fault took %s; want within %s", slowest, tickLimit)
	}
	_, err := c.n.b.StartSession(ctx, c.f.h.caller, broker.StartRequest{Role: "agent-readonly"})
	if msg := c.note(err); !errors.Is(err, broker.ErrIncident) {
		t.Errorf("start at the end of the fault: %s; want ErrIncident (declared offline, not recorded yet)", msg)
	}
	if got := c.f.h.sessionTokens(); got != 0 {
		t.Errorf("%d session tokens at Vault at the end of the fault, want 0", got)
	}
	t.Logf("MEASURE store/%s: slowest tick during the fault %s", name, slowest.Round(time.Millisecond))
}

// tickUntilCaughtUp runs the loop every 500 ms until the store records
// every session of ids as ended, holds no lease and no intent, and holds
// the incident; it returns the ticks and the time that took.
func (c *storeCase) tickUntilCaughtUp(ids []string, limit time.Duration) (int, time.Duration) {
	t := c.f.t
	t.Helper()
	ctx := context.Background()
	began := time.Now()
	for ticks := 1; ; ticks++ {
		c.n.b.Tick(ctx)
		left := c.behind(ctx, ids)
		if left == "" {
			return ticks, time.Since(began)
		}
		if time.Since(began) > limit {
			t.Fatalf("the store has not caught up %s after the fault was removed (%d ticks): %s", limit, ticks, left)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// behind says what the store has not caught up with yet ("" when nothing):
// settled (no lease left at all) and the incident recorded.
func (c *storeCase) behind(ctx context.Context, ids []string) string {
	if left := c.settledBut(ctx, ids, false); left != "" {
		return left
	}
	if _, ok, err := c.n.st.GetIncident(ctx); err != nil || !ok {
		return "no incident recorded " + errString(err)
	}
	return ""
}

// secrets is every secret value the case knows of: the PostgreSQL
// password, Vault's root token and every session token seen.
func (c *storeCase) secrets() []string {
	c.f.h.mu.Lock()
	defer c.f.h.mu.Unlock()
	return append([]string{c.pw, vaulttest.RootToken}, c.f.h.tokens...)
}

// note checks an error the broker returned for secrets and returns its
// text to print, withheld if it holds one (never print a secret).
func (c *storeCase) note(err error) string {
	msg := errString(err)
	for i, sec := range c.secrets() {
		if sec != "" && strings.Contains(msg, sec) {
			c.f.t.Errorf("an error the broker returned holds secret #%d", i)
			return "(withheld: it holds a secret)"
		}
	}
	return msg
}

// assertNoSecrets checks the broker log and the audit log for every
// secret value.
func (c *storeCase) assertNoSecrets() {
	t := c.f.t
	t.Helper()
	secrets := c.secrets()
	if len(secrets) < 4 {
		t.Fatal("fewer than 2 session tokens collected: the secret check would prove little")
	}
	noSecretIn(t, "the broker log", c.n.logs.String(), secrets)
	b, err := os.ReadFile(c.n.audit)
	if err != nil {
		t.Fatal(err)
	}
	noSecretIn(t, "the audit log", string(b), secrets)
}

// TestStoreLostMidStart: PostgreSQL goes away in the middle of a session
// start, after the session row and the intent are written and Vault has
// minted the session token, before the lease is recorded. The start fails
// closed with ErrStoreUnavailable, the token is revoked at Vault at once
// (asked of Vault directly), no session dir stays, and once the store is
// back the loop ends the session and settles the intent.
func TestStoreLostMidStart(t *testing.T) {
	t.Setenv("CB_TEST_BROKER_TOKEN", vaulttest.RootToken)
	pg := pgtest.Start(t, pgtest.Options{})
	down := faultNamed("down")
	var cut cutAfterMint
	c := newStoreCase(t, pg, func(p providers.Provider) providers.Provider {
		cut.Provider = p
		return &cut
	})
	f, n, h := c.f, c.n, c.f.h
	var minted string // the failed session's token
	cut.set = func(g providers.Grant) {
		minted = g.Files[vault.TokenFile].Reveal()
		h.mu.Lock()
		h.tokens = append(h.tokens, minted)
		h.mu.Unlock()
		down.set(t, c.proxy)
	}
	ctx := context.Background()
	before, tokBefore := f.start(n)
	c.before = h.sessionTokens() // the session's and the epoch

	cut.armed.Store(true)
	_, took, err := timed(t, "session start", func() (broker.SessionInfo, error) {
		return n.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-readonly"})
	})
	if cut.armed.Load() {
		t.Fatalf("the start never minted (%s): the cut did not happen mid-start", c.note(err))
	}
	msg := c.note(err)
	if !errors.Is(err, broker.ErrStoreUnavailable) {
		t.Fatalf("start with the store lost after the mint: %s; want ErrStoreUnavailable", msg)
	}
	t.Logf("MEASURE store/mid-start: the start failed in %s: %s", took.Round(time.Millisecond), msg)
	if h.tokenValid(minted) {
		t.Error("the token minted for the failed start is still valid at Vault")
	}
	if got := h.sessionTokens(); got != c.before {
		t.Errorf("%d session tokens at Vault after the failed start, want the %d from before", got, c.before)
	}
	if ids, _ := n.w.List(); len(ids) != 1 {
		t.Errorf("session dirs after the failed start: %v; want only the earlier session's", ids)
	}

	down.clear(t, c.proxy)
	failed := otherSession(t, n.st, before.ID)
	if failed == "" {
		t.Fatalf("the store has no row for the failed start: it was lost before the session was written")
	}
	if _, err := n.b.EndSession(ctx, h.caller, before.ID, "test over"); err != nil {
		t.Fatal(err)
	}
	// The intent of the failed mint could not be deleted; the loop settles
	// intents once they are 5 minutes old.
	n.offset.Store(int64(6 * time.Minute))
	settled := waitFor(t, 30*time.Second, "the store to catch up", func() bool {
		n.b.Tick(ctx)
		return c.settledBut(ctx, []string{before.ID, failed}, true) == ""
	})
	t.Logf("MEASURE store/mid-start: store caught up %s after it was back", settled.Round(time.Millisecond))
	if h.tokenValid(tokBefore) {
		t.Error("the earlier session's token is still valid after its end")
	}
	if got := h.sessionTokens(); got != 1 {
		t.Errorf("%d session tokens at Vault at the end, want 1 (the epoch)", got)
	}
	c.assertNoSecrets()
}

// settledBut says what the store has not settled yet ("" when nothing):
// every session of ids ended, no intent, and no lease (with keepEpoch, but
// the broker's active Vault epoch, which outlives sessions).
func (c *storeCase) settledBut(ctx context.Context, ids []string, keepEpoch bool) string {
	st := c.n.st
	for _, id := range ids {
		s, err := st.GetSession(ctx, id)
		if err != nil || s.State != leases.SessionEnded {
			return "session " + id + " is " + string(s.State) + " " + errString(err)
		}
	}
	ls, err := st.FindLeases(ctx, leases.LeaseFilter{})
	if err != nil {
		return err.Error()
	}
	for _, l := range ls {
		if !keepEpoch || l.Kind != vault.KindEpoch || l.State != leases.LeaseActive {
			return "lease " + l.ID + " is " + string(l.State)
		}
	}
	if ins, err := st.ListIntents(ctx); err != nil || len(ins) != 0 {
		return strconv.Itoa(len(ins)) + " intents " + errString(err)
	}
	return ""
}

// cutAfterMint wraps a provider: once armed, it calls set with the grant
// right after the next mint returns, before the broker records it.
type cutAfterMint struct {
	providers.Provider
	armed atomic.Bool
	set   func(providers.Grant)
}

func (c *cutAfterMint) Mint(ctx context.Context, s providers.Session, role configs.Role) (providers.Grant, error) {
	g, err := c.Provider.Mint(ctx, s, role)
	if c.armed.CompareAndSwap(true, false) {
		c.set(g)
	}
	return g, err
}

// TestIncidentWatchThroughBlackHole: broker b's network to PostgreSQL
// turns into a black hole (packets dropped, connections never closed or
// reset) while another broker declares an incident. b's incident watch
// finds its dead connection by itself (it pings after 2 s without a
// notice), keeps reconnecting, and once the network is back it wipes b's
// session dir with no loop tick. (TestFleetBrokerCutOffDuringIncident
// does the same with a cut that resets the connections.)
func TestIncidentWatchThroughBlackHole(t *testing.T) {
	t.Setenv("CB_TEST_BROKER_TOKEN", vaulttest.RootToken)
	pg := pgtest.Start(t, pgtest.Options{})
	c := newStoreCase(t, pg, nil)
	f, b := c.f, c.n
	a := f.newNode("d")
	f.nodes["d"] = a
	ctx := context.Background()
	b.watch(t)
	si, tok := f.start(b)

	hole := faultNamed("blackhole")
	hole.set(t, c.proxy)
	// Past watchIdle + watchCheck: the watch has found its connection
	// dead and is reconnecting into the black hole.
	time.Sleep(6 * time.Second)
	if _, err := a.b.RevokeAll(ctx, f.h.caller, "b is in a black hole"); err != nil {
		t.Fatal(err)
	}
	if f.h.tokenValid(tok) {
		t.Error("b's token survived revoke --all while b was in a black hole")
	}
	time.Sleep(time.Second)
	if dirGone(si.Dir) {
		t.Fatal("b's dir went while b could not hear of the incident: was the black hole on?")
	}
	// Toxiproxy closes the held connections when the black hole is
	// removed, which a real partition that heals does not: the watch must
	// have found the dead connection before that.
	if !strings.Contains(b.logs.String(), "incident watch interrupted") {
		t.Fatal("7 s into the black hole the incident watch has not noticed its connection is dead")
	}
	hole.clear(t, c.proxy)
	took := waitFor(t, 20*time.Second, "b's dir gone after the black hole cleared", func() bool { return dirGone(si.Dir) })
	t.Logf("MEASURE store/watch-blackhole: b wiped its dir %s after the black hole cleared", took.Round(time.Millisecond))
	if strings.Contains(b.logs.String(), c.pw) {
		t.Error("the broker log holds the PostgreSQL password")
	}
}
