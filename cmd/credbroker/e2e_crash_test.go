package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
)

// crashSteps are the daemon's failpoints (b.at in package broker), by the
// operation that reaches them.
var crashSteps = []struct{ step, phase string }{
	{"after-intent", "start"},
	{"after-mint", "start"},
	{"after-record", "start"},
	{"before-write-dir", "start"},
	{"after-write-dir", "start"},
	{"before-activate", "start"},
	{"end-after-mark-ending", "end"},
	{"end-after-wipe", "end"},
	{"after-lease-revoke", "end"},
	{"end-before-mark-ended", "end"},
	{"refresh-after-renew", "refresh"},
	{"refresh-after-record", "refresh"},
	{"after-incident-lock", "revoke-all"},
	{"revoke-all-after-provider", "revoke-all"},
	{"revoke-all-before-finish", "revoke-all"},
}

// settleLimit bounds the recovery after a restart. An incident's leftover
// leases are revoked one by one once incidentGrace (15 s) has passed.
const settleLimit = 45 * time.Second

// TestE2ECrashMatrix SIGKILLs the daemon at every failpoint of session
// start, session end, refresh and revoke --all, and at random moments of a
// mixed workload, restarts it and asks Vault, MinIO, the kube-apiserver and
// the lease store for credentials valid but unknown to the store, or known
// to the store but already revoked, and for store inconsistencies. The goal
// is zero for each. `make crash` runs the long variant (12 rounds of the
// matrix and 40 random kills, 208 kills); make test runs one round and 10
// random kills.
func TestE2ECrashMatrix(t *testing.T) {
	t.Parallel()
	rounds := envInt(t, "CREDBROKER_CRASH_ROUNDS", 1)
	randoms := envInt(t, "CREDBROKER_CRASH_RANDOM", 10)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CREDBROKER_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("random kills: seed %d (CREDBROKER_CRASH_SEED=%d repeats them)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	w := newCrashWorld(t)
	rep := &crashReport{rows: map[string]*crashRow{}}
	only := map[string]bool{} // CREDBROKER_CRASH_STEPS=step,step: only those
	for s := range strings.SplitSeq(os.Getenv("CREDBROKER_CRASH_STEPS"), ",") {
		if s != "" {
			only[s] = true
		}
	}
	for range rounds {
		for _, st := range crashSteps {
			if len(only) == 0 || only[st.step] {
				w.crashAt(t, st.step, st.phase, rep)
			}
		}
	}
	for range randoms {
		w.crashRandom(t, rng, rep)
	}
	table := rep.table()
	t.Logf("crash matrix, %d kills:\n%s", rep.kills, table)
	if path := os.Getenv("CREDBROKER_CRASH_REPORT"); path != "" {
		if err := os.WriteFile(path, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
	if rep.bad > 0 {
		t.Errorf("%d of %d kills left credentials valid but unknown, known but revoked, or an inconsistent store (see the log above)", rep.bad, rep.kills)
	}
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, v)
	}
	return n
}

// crashAt runs the operation of phase against a daemon that stops at step,
// kills it there, restarts it and counts.
func (w *crashWorld) crashAt(t *testing.T, step, phase string, rep *crashReport) {
	t.Helper()
	d := w.serve(t, "CREDBROKER_FAILPOINT="+step)
	var id string
	if phase != "start" {
		si := w.startJSON(t, "--role", crashRole)
		w.sessionToken(t, si.Dir)
		id = si.ID
	}
	var c *proc
	name := "crash at " + step
	switch phase {
	case "start":
		c = w.start(t, name, nil, "session", "start", "--role", crashRole)
	case "end":
		c = w.start(t, name, nil, "session", "end", id)
	case "refresh":
		w.setClock(t, "13m") // past 80 % of the AWS credentials' and 2/3 of the kube token's life
	case "revoke-all":
		c = w.start(t, name, nil, "revoke", "--all", "--reason", "crash test")
	}
	d.waitStderr(t, "FAILPOINT "+step, time.Minute)
	d.kill()
	if c != nil {
		c.kill()
	}
	w.recover(t, step, rep)
}

// crashRandom kills the daemon at a random moment of a workload that
// starts, refreshes and ends sessions and now and then revokes everything.
func (w *crashWorld) crashRandom(t *testing.T, rng *rand.Rand, rep *crashReport) {
	t.Helper()
	d := w.serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wseed := rng.Uint64()
	wg.Go(func() { w.workload(ctx, rand.New(rand.NewPCG(wseed, 1))) })
	time.Sleep(time.Duration(50+rng.IntN(2000)) * time.Millisecond)
	d.kill()
	cancel()
	wg.Wait()
	w.recover(t, "random", rep)
}

// workload runs CLI commands until ctx ends. It runs in a goroutine, so it
// never fails the test; what the daemon was doing when killed is what the
// count after the restart judges.
func (w *crashWorld) workload(ctx context.Context, rng *rand.Rand) {
	for ctx.Err() == nil {
		out, code := w.cliCtx(ctx, "session", "start", "--output", "json", "--role", crashRole)
		var si broker.SessionInfo
		if code != 0 || json.Unmarshal([]byte(out), &si) != nil {
			return
		}
		switch n := rng.IntN(10); {
		case n < 2:
			_ = os.WriteFile(w.clockFile, []byte("13m"), 0o600) // the refresher renews within a tick
			time.Sleep(time.Duration(rng.IntN(1500)) * time.Millisecond)
			_ = os.WriteFile(w.clockFile, []byte("0s"), 0o600)
		case n < 3:
			w.cliCtx(ctx, "revoke", "--all", "--reason", "random crash test")
			w.cliCtx(ctx, "incident", "clear")
		default:
			w.cliCtx(ctx, "session", "end", si.ID)
		}
	}
}

// cliCtx runs credbroker in the background of a test, with its output kept
// for the leak check; it returns stdout and the exit code.
func (w *crashWorld) cliCtx(ctx context.Context, args ...string) (string, int) {
	cmd := exec.CommandContext(ctx, cbBin, append([]string{"--config", w.config}, args...)...)
	cmd.Env = baseEnv()
	name := "credbroker " + strings.Join(args, " ") + " (workload)"
	stdout, stderr := w.capture(name+" stdout"), w.capture(name+" stderr")
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	_ = cmd.Run()
	return stdout.String(), cmd.ProcessState.ExitCode()
}

// recover restarts the daemon (it reconciles before it answers), waits
// until the servers and the store agree or settleLimit passes, records
// the count, then ends whatever is live and checks that nothing valid is
// left before the next kill.
func (w *crashWorld) recover(t *testing.T, step string, rep *crashReport) {
	t.Helper()
	began := time.Now()
	w.serve(t)
	var c crashCount
	eventually(settleLimit, 200*time.Millisecond, func() bool { c = w.count(t); return c.clean() })
	rep.add(step, c, time.Since(began))
	if !c.clean() {
		t.Errorf("after a kill at %s and a restart: %s\n%s", step, c, strings.Join(c.details, "\n"))
	}

	// Start the next kill from nothing.
	var st broker.Status
	if err := json.Unmarshal([]byte(w.mustCLI(t, "status", "--output", "json").stdout), &st); err != nil {
		t.Fatal(err)
	}
	if st.Incident != nil {
		w.mustCLI(t, "incident", "clear")
	}
	for _, s := range st.Sessions {
		w.mustCLI(t, "session", "end", s.ID)
	}
	w.setClock(t, "0s")
	if c := w.count(t); !c.clean() || c.valid != 0 {
		t.Fatalf("after ending every session (kill at %s): %s\n%s", step, c, strings.Join(c.details, "\n"))
	}
	w.stopAll(t)
}

// crashReport counts per step.
type crashReport struct {
	mu    sync.Mutex
	rows  map[string]*crashRow
	order []string
	kills int
	bad   int
}

type crashRow struct {
	kills                    int
	vaultU, minioU, kubeU    int // valid but unknown
	known                    int // known but revoked
	store                    int // store inconsistencies
	maxRecover, totalRecover time.Duration
}

func (r *crashReport) add(step string, c crashCount, took time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	row := r.rows[step]
	if row == nil {
		row = &crashRow{}
		r.rows[step] = row
		r.order = append(r.order, step)
	}
	row.kills++
	r.kills++
	row.vaultU += c.validUnknown["vault"]
	row.minioU += c.validUnknown["minio"]
	row.kubeU += c.validUnknown["kube"]
	row.known += sum(c.knownRevoked)
	row.store += len(c.store)
	row.maxRecover = max(row.maxRecover, took)
	row.totalRecover += took
	if !c.clean() {
		r.bad++
	}
}

// table is the report as a Markdown table (docs/reliability.md).
func (r *crashReport) table() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	b.WriteString("| step | kills | valid but unknown (Vault / MinIO / kube) | known but revoked | store inconsistencies | recovery, mean / max |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|\n")
	steps := append([]string(nil), r.order...)
	sort.SliceStable(steps, func(i, j int) bool { return steps[i] != "random" && steps[j] == "random" })
	var tot crashRow
	for _, s := range steps {
		row := r.rows[s]
		fmt.Fprintf(&b, "| %s | %d | %d / %d / %d | %d | %d | %s / %s |\n", s, row.kills, row.vaultU, row.minioU, row.kubeU,
			row.known, row.store, (row.totalRecover / time.Duration(row.kills)).Round(10*time.Millisecond), row.maxRecover.Round(10*time.Millisecond))
		tot.kills += row.kills
		tot.vaultU += row.vaultU
		tot.minioU += row.minioU
		tot.kubeU += row.kubeU
		tot.known += row.known
		tot.store += row.store
	}
	fmt.Fprintf(&b, "| **all** | **%d** | **%d / %d / %d** | **%d** | **%d** | |\n", tot.kills, tot.vaultU, tot.minioU, tot.kubeU, tot.known, tot.store)
	return b.String()
}
