package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
)

// Three brokers, each a container (its own host) on a private network,
// share one PostgreSQL and one Vault. revoke --all on one reaches every
// broker: every session token is rejected by Vault and every session dir
// on every host is gone. Then, with one broker stopped and one cut off the
// network, revoke --all again: their tokens are rejected at once (the
// revocation is provider-wide), and each wipes its dirs as soon as it is
// back: the stopped one before it serves, the cut-off one as soon as it is
// reconnected.
func TestFleetIncident(t *testing.T) {
	t.Parallel()
	w := newFleetWorld(t)
	bs := w.startBrokers("fleet-a", "fleet-b", "fleet-c")
	a, b, c := bs[0], bs[1], bs[2]

	var ss []fleetSession
	for _, br := range bs {
		for range 2 {
			ss = append(ss, br.startSession())
		}
	}
	for _, s := range ss {
		if !s.tokenValid() || s.dirGone() {
			t.Fatalf("session %s on %s is not usable before the incident", s.info.ID, s.b.name)
		}
	}
	checkFleetViews(t, b, map[string]int{"fleet-a": 2, "fleet-b": 2, "fleet-c": 2})

	// The time docker exec itself takes, to read the numbers below.
	execStart := time.Now()
	a.mustExec("version")
	execCost := time.Since(execStart)

	// Poll while the command runs, to see when the last token and dir go.
	start := time.Now()
	var tokensAt, dirsAt time.Duration
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		tokensAt, dirsAt = waitFleetRevoked(t, start, ss, 15*time.Second)
	}()
	out := a.mustExec("revoke", "--all", "--reason", "fleet drill")
	<-polled
	t.Logf("revoke --all on %s (docker exec, which costs about %v itself): last session token rejected %v after the exec started, last session dir gone %v after\n%s",
		a.name, execCost.Round(time.Millisecond), tokensAt.Round(time.Millisecond), dirsAt.Round(time.Millisecond), out)
	for _, s := range ss {
		if !s.dirGoneInContainer() {
			t.Errorf("session dir of %s is still there inside %s", s.info.ID, s.b.name)
		}
	}
	if n := a.auditEvents(broker.EvProviderRevoke); n != 1 {
		t.Errorf("%s audited %d provider-wide revocations, want 1", a.name, n)
	}
	for _, br := range []*fleetBroker{b, c} {
		if n := br.auditEvents(broker.EvProviderRevoke); n != 0 {
			t.Errorf("%s ran %d provider-wide revocations; only the broker asked should", br.name, n)
		}
	}
	code, _, errOut := c.exec("session", "start", "--role", "agent-readonly")
	if code != 4 || !strings.Contains(errOut, "incident") {
		t.Errorf("session start on %s during the incident: exit %d, %q; want 4 and the incident", c.name, code, errOut)
	}
	a.mustExec("incident", "clear")

	// A stopped broker and a cut-off one.
	var later []fleetSession
	for _, br := range []*fleetBroker{b, c} {
		for range 2 {
			later = append(later, br.startSession())
		}
	}
	fleetMustDocker(t, "stop", "--time", "20", c.container)
	fleetMustDocker(t, "network", "disconnect", w.network, b.container)
	a.mustExec("revoke", "--all", "--reason", "two brokers away")
	for _, s := range later {
		if s.tokenValid() {
			t.Errorf("the token of %s on %s (away) is still valid: the provider-wide revocation missed it", s.info.ID, s.b.name)
		}
	}
	time.Sleep(time.Second) // time b would have had, had it heard anything
	for _, s := range later {
		if s.dirGone() {
			t.Fatalf("the dir of %s on %s went while %s could not know of the incident", s.info.ID, s.b.name, s.b.name)
		}
	}
	if later[0].dirGoneInContainer() {
		t.Fatalf("%s lost its dir while cut off", b.name)
	}

	back := time.Now()
	fleetMustDocker(t, "network", "connect", w.network, b.container)
	connected := time.Since(back)
	waitSessionsGone(t, later[:2], 30*time.Second)
	t.Logf("%s wiped its dirs %v after `docker network connect` started (which took %v)", b.name,
		time.Since(back).Round(time.Millisecond), connected.Round(time.Millisecond))

	fleetMustDocker(t, "start", c.container)
	served := c.waitServing(60 * time.Second)
	for _, s := range later[2:] {
		if !s.dirGone() {
			t.Errorf("%s serves, but the dir of its session %s is still there", c.name, s.info.ID)
		}
	}
	t.Logf("%s served %v after docker start, its dirs already gone", c.name, served.Round(time.Millisecond))
	checkFleetViews(t, a, map[string]int{})
}

// waitFleetRevoked polls until every session token is rejected and every
// dir is gone, and returns when each last happened, measured from start. It
// may run in its own goroutine (it fails the test with Errorf).
func waitFleetRevoked(t *testing.T, start time.Time, ss []fleetSession, limit time.Duration) (tokens, dirs time.Duration) {
	t.Helper()
	tokenDone := make([]bool, len(ss))
	dirDone := make([]bool, len(ss))
	for {
		allTokens, allDirs := true, true
		for i, s := range ss {
			if !tokenDone[i] && !s.tokenValid() {
				tokenDone[i], tokens = true, time.Since(start)
			}
			if !dirDone[i] && s.dirGone() {
				dirDone[i], dirs = true, time.Since(start)
			}
			allTokens = allTokens && tokenDone[i]
			allDirs = allDirs && dirDone[i]
		}
		if allTokens && allDirs {
			return tokens, dirs
		}
		if time.Since(start) > limit {
			t.Errorf("after %s: tokens rejected %v, dirs gone %v", limit, tokenDone, dirDone)
			return tokens, dirs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitSessionsGone waits until the dirs of ss are gone and returns how
// long that took.
func waitSessionsGone(t *testing.T, ss []fleetSession, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		gone := true
		for _, s := range ss {
			gone = gone && s.dirGone()
		}
		if gone {
			return time.Since(start)
		}
		if time.Since(start) > limit {
			t.Fatalf("session dirs still there after %s", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkFleetViews checks `session list --all-hosts` and `status
// --all-hosts` on br against the live sessions per host, and that a plain
// `session list` shows br's own.
func checkFleetViews(t *testing.T, br *fleetBroker, perHost map[string]int) {
	t.Helper()
	var fleet []broker.SessionInfo
	if err := json.Unmarshal([]byte(br.mustExec("session", "list", "--all-hosts", "-o", "json")), &fleet); err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, s := range fleet {
		got[s.Host]++
	}
	if fmt.Sprint(got) != fmt.Sprint(perHost) {
		t.Errorf("session list --all-hosts on %s: sessions per host %v, want %v", br.name, got, perHost)
	}
	var own []broker.SessionInfo
	if err := json.Unmarshal([]byte(br.mustExec("session", "list", "-o", "json")), &own); err != nil {
		t.Fatal(err)
	}
	if len(own) != perHost[br.name] {
		t.Errorf("session list on %s: %d sessions, want its own %d", br.name, len(own), perHost[br.name])
	}
	text := br.mustExec("status", "--all-hosts")
	total := 0
	for h, n := range perHost {
		total += n
		if !strings.Contains(text, fmt.Sprintf("%s=%d", h, n)) {
			t.Errorf("status --all-hosts on %s does not show %s=%d:\n%s", br.name, h, n, text)
		}
	}
	if !strings.Contains(text, fmt.Sprintf("sessions (%d live on %d hosts)", total, len(perHost))) {
		t.Errorf("status --all-hosts on %s:\n%s", br.name, text)
	}
	// Every broker of these fleets has the same provider config.
	if !strings.Contains(text, "this host") || strings.Contains(text, "DIFFERS") {
		t.Errorf("status --all-hosts on %s: want its own host line and no divergent config:\n%s", br.name, text)
	}
}

// PostgreSQL stopped mid-way: a session start fails closed with a clear
// message and mints nothing; session end still revokes at Vault and wipes
// the dir; the store catches up once PostgreSQL is back.
func TestFleetStoreOutage(t *testing.T) {
	t.Parallel()
	w := newFleetWorld(t)
	a := w.startBrokers("fleet-a")[0]
	s := a.startSession()
	tokens := fleetLiveTokens(t, w)

	w.pg.Stop(t)
	code, _, errOut := a.exec("session", "start", "--role", "agent-readonly")
	if code == 0 || !strings.Contains(errOut, "lease store unavailable") || !strings.Contains(errOut, "fails closed") {
		t.Errorf("session start with PostgreSQL stopped: exit %d, stderr %q; want a failure that says the store is unavailable and nothing is minted", code, errOut)
	}
	t.Logf("session start with PostgreSQL stopped: exit %d: %s", code, strings.TrimSpace(errOut))
	if n := fleetLiveTokens(t, w); n != tokens {
		t.Errorf("%d live session tokens in Vault after the refused start, want %d", n, tokens)
	}

	code, _, errOut = a.exec("session", "end", s.info.ID)
	if code != 5 || !strings.Contains(errOut, "revoked at the providers") {
		t.Errorf("session end with PostgreSQL stopped: exit %d, stderr %q; want 5 and what was done", code, errOut)
	}
	t.Logf("session end with PostgreSQL stopped: exit %d: %s", code, strings.TrimSpace(errOut))
	if s.tokenValid() {
		t.Error("the session token is still valid after session end with PostgreSQL stopped")
	}
	if !s.dirGoneInContainer() {
		t.Error("the session dir is still there after session end with PostgreSQL stopped")
	}

	w.pg.Start(t)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var si broker.SessionInfo
		_, out, _ := a.exec("session", "show", s.info.ID, "-o", "json")
		if json.Unmarshal([]byte(out), &si) == nil && si.State == "ended" && len(si.Leases) == 0 {
			t.Logf("the store recorded the end once PostgreSQL was back: %s", si.EndReason)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after PostgreSQL came back the session is %q with %d leases", si.State, len(si.Leases))
		}
		time.Sleep(500 * time.Millisecond)
	}
	s2 := a.startSession()
	if !s2.tokenValid() {
		t.Error("a session started after PostgreSQL came back does not work")
	}
}

// fleetLiveTokens counts the live session tokens in the fleet's Vault.
func fleetLiveTokens(t *testing.T, w *fleetWorld) int {
	t.Helper()
	e := &e2e{srv: w.vault}
	return e.liveSessionTokens(t)
}

// Two brokers started at the same moment on an empty database: both serve,
// and the schema was created once, by one transaction.
func TestFleetMigratesOnce(t *testing.T) {
	t.Parallel()
	w := newFleetWorld(t)
	x, y := w.create("fleet-x"), w.create("fleet-y")
	var wg sync.WaitGroup
	for _, br := range []*fleetBroker{x, y} {
		wg.Go(func() { fleetMustDocker(t, "start", br.container) })
	}
	wg.Wait()
	x.waitServing(30 * time.Second)
	y.waitServing(30 * time.Second)

	su := pgtest.Superuser(t, w.db)
	ctx := context.Background()
	rows, err := su.Query(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	var writers int
	if err := su.QueryRow(ctx, `SELECT count(DISTINCT xmin::text) FROM schema_migrations`).Scan(&writers); err != nil {
		t.Fatal(err)
	}
	if len(versions) == 0 || versions[0] != 1 || writers != 1 {
		t.Errorf("schema_migrations: versions %v written by %d transactions; want 1..n by one", versions, writers)
	}
	for i, v := range versions {
		if v != i+1 {
			t.Errorf("schema_migrations: versions %v, want 1..n once each", versions)
			break
		}
	}
	// Both work on the one schema.
	x.startSession()
	y.startSession()
	checkFleetViews(t, x, map[string]int{"fleet-x": 1, "fleet-y": 1})
}
