package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// BenchmarkDaemonMemory10000: a real `credbroker serve` (release build,
// SQLite store, sessions on tmpfs) and a real Vault; 10,000 sessions of
// role agent-readonly started through the daemon's socket, 8 requests in
// flight, none ended. Reported from /proc/<pid>/status of the daemon:
// VmRSS before and after, VmHWM, and the live heap after the daemon's last
// GC (GODEBUG=gctrace=1). The sessions' dirs are on tmpfs and count
// against the machine's memory, not the daemon's (reported separately).
// Run with -benchtime=1x.
func BenchmarkDaemonMemory10000(b *testing.B) {
	const n = 10000
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		benchDaemonMemory(b, n)
	}
}

func benchDaemonMemory(b *testing.B, n int) {
	srv := vaulttest.Start(b)
	vaulttest.Seed(b, srv)
	d := startBenchDaemon(b, fmt.Sprintf(`providers:
  vault:
    address: %s
    auth:
      token_env: %s
    token_role: %s
    epoch_ttl: 24h
roles:
  agent-readonly:
    ttl: 1h
    max_ttl: 2h
    vault:
      policies: [agent-readonly]
      secrets:
        - name: config
          path: secret/data/agent/readonly/config
`, srv.Addr, brokerTokenEnv, vaulttest.TokenRole), brokerTokenEnv+"="+vaulttest.RootToken, "GODEBUG=gctrace=1")
	pid := d.cmd.Process.Pid
	c := broker.NewClient(d.socket)
	ctx := context.Background()
	// One session first, so the baseline includes the provider's epoch
	// token, the store's connections and the code paths' first use.
	if _, err := c.StartSession(ctx, broker.StartRequest{Role: "agent-readonly"}); err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second)
	before := procStatus(b, pid)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	start := time.Now()
	b.StartTimer()
	for range n {
		g.Go(func() error {
			_, err := c.StartSession(gctx, broker.StartRequest{Role: "agent-readonly"})
			return err
		})
	}
	if err := g.Wait(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	took := time.Since(start)
	time.Sleep(2 * time.Second) // let refresh loops and the GC settle
	after := procStatus(b, pid)
	st, err := c.Status(ctx)
	if err != nil || len(st.Sessions) < n {
		b.Fatalf("status: %d sessions, %v", len(st.Sessions), err)
	}
	heap := lastGCLiveHeapMB(d.stderr.String())
	b.ReportMetric(float64(before["VmRSS"])/1024, "MB-rss-before")
	b.ReportMetric(float64(after["VmRSS"])/1024, "MB-rss-10000")
	b.ReportMetric(float64(after["VmHWM"])/1024, "MB-hwm")
	b.ReportMetric(float64(after["VmRSS"]-before["VmRSS"])*1024/float64(n), "B-rss/session")
	b.ReportMetric(heap, "MB-heap-live")
	b.ReportMetric(float64(n)/took.Seconds(), "sessions/s")
	b.ReportMetric(float64(shmUsedKB(b, filepath.Join(d.dir, "run")))/1024, "MB-session-dirs")
}

// procStatus reads the kB fields of /proc/pid/status.
func procStatus(b *testing.B, pid int) map[string]int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			out[k], _ = strconv.ParseInt(f[0], 10, 64)
		}
	}
	return out
}

// gcLine matches gctrace's "A->B->C MB": C is the heap live after the GC.
var gcLine = regexp.MustCompile(`(\d+)->(\d+)->(\d+) MB`)

func lastGCLiveHeapMB(stderr string) float64 {
	m := gcLine.FindAllStringSubmatch(stderr, -1)
	if len(m) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(m[len(m)-1][3], 64)
	return v
}

// shmUsedKB is the disk usage of dir (tmpfs), as du -sk reports it.
func shmUsedKB(b *testing.B, dir string) int64 {
	out, err := runOutput("du", "-sk", dir)
	if err != nil {
		b.Logf("du: %v", err)
		return 0
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseInt(f[0], 10, 64)
	return v
}
