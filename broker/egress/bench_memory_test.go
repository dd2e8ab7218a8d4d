package egress

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holderEnv makes the test binary (TestMain, runHolder) the far side of
// BenchmarkEgressMemoryPerTunnel; its value is the tunnels per socket.
const holderEnv = "CREDBROKER_EGRESS_BENCH_HOLDER"

// Shape of BenchmarkEgressMemoryPerTunnel: 1,000 tunnels in all (the
// gateway allows 256 at once per session).
const (
	memSessions   = 10
	memPerSession = 100
)

// BenchmarkEgressMemoryPerTunnel measures what an open, idle tunnel costs
// the daemon: the daemon's Manager serves 10 sessions' gateways in this
// process, and a child process (this test binary as
// runHolder) runs the loopback server and opens 100 SOCKS5
// tunnels through each gateway, so only the gateway's side of the 1,000
// tunnels is in this process. Reported, after a GC, per tunnel: heap in
// use (B-heap/tunnel), goroutine stacks (B-stack/tunnel), goroutines, and
// VmRSS (B-rss/tunnel; kernel socket buffers are not in it). Run with
// -benchtime=1x. The time per op is that of opening the 1,000 tunnels
// (the holder opens them one after another).
func BenchmarkEgressMemoryPerTunnel(b *testing.B) {
	for range b.N {
		b.StopTimer()
		benchTunnelMemory(b)
	}
}

// memSample is the process's memory at one point, after a GC.
type memSample struct {
	heap, stack, rss uint64
	goroutines       int
}

func sampleMem(b *testing.B) memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, stack: ms.StackInuse, rss: vmRSS(b), goroutines: runtime.NumGoroutine()}
}

func benchTunnelMemory(b *testing.B) {
	h := startHolder(b)
	cfg := testConfig([]string{"idle.test:" + h.port}, nil, map[string]string{"idle.test": "127.0.0.1"})
	m := NewManager(ManagerConfig{Dir: filepath.Join(shortDir(b), "egress"), Config: cfg,
		Resolver: &Resolver{Hosts: cfg.EgressHosts(), Lookup: noDNS}, Report: func(Record) {}})
	defer m.CloseAll()
	var socks []string
	for i := range memSessions {
		p, err := m.Open(fmt.Sprintf("s-mem-%d", i), "r", os.Geteuid())
		if err != nil || p == "" {
			b.Fatalf("open gateway %d: %q, %v", i, p, err)
		}
		socks = append(socks, p)
	}
	// One tunnel through each gateway first, so the baseline includes the
	// code paths' first use.
	h.send(b, append(socks, "1")...)
	h.wait(b, "ready 1")
	h.send(b, "close")
	h.wait(b, "closed")
	waitOpen(b, m, 0)
	before := sampleMem(b)
	b.StartTimer()
	h.send(b, strconv.Itoa(memPerSession))
	h.wait(b, fmt.Sprintf("ready %d", memPerSession))
	b.StopTimer()
	waitOpen(b, m, memPerSession)
	time.Sleep(200 * time.Millisecond) // the handlers reach their idle reads
	after := sampleMem(b)
	waitOpen(b, m, memPerSession) // still all open when measured
	const n = memSessions * memPerSession
	per := func(after, before uint64) float64 { return (float64(after) - float64(before)) / n }
	b.ReportMetric(per(after.heap, before.heap), "B-heap/tunnel")
	b.ReportMetric(per(after.stack, before.stack), "B-stack/tunnel")
	b.ReportMetric(per(after.rss, before.rss), "B-rss/tunnel")
	b.ReportMetric(float64(after.goroutines-before.goroutines)/n, "goroutines/tunnel")
	b.ReportMetric(float64(before.rss)/(1<<20), "MB-rss-before")
	b.ReportMetric(float64(after.rss)/(1<<20), "MB-rss-1000")
	h.send(b, "close")
	h.wait(b, "closed")
}

// waitOpen waits until every session's gateway has want connections open.
func waitOpen(b *testing.B, m *Manager, want int64) {
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < memSessions; {
		st, _ := m.Stats(fmt.Sprintf("s-mem-%d", i))
		if st.Open == want {
			i++
			continue
		}
		if time.Now().After(deadline) {
			b.Fatalf("session %d has %d connections open, want %d", i, st.Open, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// vmRSS is this process's resident set size in bytes.
func vmRSS(b *testing.B) uint64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// holder is the child process that holds the tunnels' far ends.
type holder struct {
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *bufio.Reader
	port string
}

// startHolder starts the holder; it is killed after two minutes, so a
// stuck exchange fails the benchmark instead of hanging it.
func startHolder(b *testing.B) *holder {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	b.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), holderEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	h := &holder{cmd: cmd, in: in, out: bufio.NewReader(out)}
	b.Cleanup(func() { in.Close(); _ = cmd.Wait() })
	h.port = strings.TrimPrefix(h.wait(b, "port "), "port ")
	return h
}

func (h *holder) send(b *testing.B, lines ...string) {
	if _, err := io.WriteString(h.in, strings.Join(lines, "\n")+"\n"); err != nil {
		b.Fatalf("holder: %v", err)
	}
}

// wait reads the holder's lines until one starts with prefix.
func (h *holder) wait(b *testing.B, prefix string) string {
	for {
		line, err := h.out.ReadString('\n')
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, prefix) {
			return line
		}
		if strings.HasPrefix(line, "error") || err != nil {
			b.Fatalf("holder: want %q, got %q, %v", prefix, line, err)
		}
	}
}

// TestMain runs the test binary as the tunnel holder (runHolder) when
// BenchmarkEgressMemoryPerTunnel starts it as its child process, and the
// tests otherwise.
func TestMain(m *testing.M) {
	if os.Getenv(holderEnv) != "" {
		if err := runHolder(); err != nil {
			fmt.Printf("error: %v\n", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHolder is BenchmarkEgressMemoryPerTunnel's child process: it holds
// the far ends of the tunnels the benchmark measures. It serves an idle
// loopback TCP server (printing "port N"), then reads commands on stdin: socket paths (saved), a number K (open K
// SOCKS5 tunnels through each saved socket, print "ready K"), "close"
// (close them, print "closed"). It ends at EOF.
func runHolder() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	fmt.Printf("port %d\n", port)
	var socks []string
	var open []net.Conn
	closeAll := func() {
		for _, c := range open {
			c.Close()
		}
		open = nil
	}
	defer closeAll()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		k, numErr := strconv.Atoi(line)
		switch {
		case line == "close":
			closeAll()
			fmt.Println("closed")
		case numErr == nil:
			for range k {
				for _, s := range socks {
					c, err := net.Dial("unix", s)
					if err == nil {
						err = socksOpen(c, append([]byte{9}, "idle.test"...), port)
					}
					if err != nil {
						return fmt.Errorf("tunnel through %s: %w", s, err)
					}
					open = append(open, c)
				}
			}
			fmt.Printf("ready %d\n", k)
		default:
			socks = append(socks, line)
		}
	}
	return sc.Err()
}
