package egress

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Shape of BenchmarkEgressTunnels200 (issue 14: 200 concurrent tunnels
// from 10 sessions).
const (
	benchSessions   = 10
	benchPerSession = 20
	benchTunnelData = 256 << 10 // bytes each tunnel downloads
)

// BenchmarkEgressTunnels200: one op opens 200 connections at once to a
// loopback server, waits until all 200 are open together, then has each
// download 256 KiB, then closes them. "direct" dials the server; "gateway"
// goes through 10 sessions' gateways opened by the daemon's Manager (one
// socket per session, 20 SOCKS5 tunnels through each). Reported besides
// ns/op (open all + transfer + close) and MB/s: ms-open-all, the time
// until the 200 were open.
func BenchmarkEgressTunnels200(b *testing.B) {
	srv := sendOnRequest(b, benchTunnelData)
	ap := netip.MustParseAddrPort(srv.Addr().String())
	cfg := testConfig([]string{"bulk.test:" + portOf(ap)}, nil, map[string]string{"bulk.test": "127.0.0.1"})
	m := NewManager(ManagerConfig{Dir: filepath.Join(shortDir(b), "egress"), Config: cfg,
		Resolver: &Resolver{Hosts: cfg.EgressHosts(), Lookup: noDNS}})
	defer m.CloseAll()
	var socks []string
	for i := range benchSessions {
		p, err := m.Open(fmt.Sprintf("s-bench-%d", i), "r", os.Geteuid())
		if err != nil || p == "" {
			b.Fatalf("open gateway %d: %q, %v", i, p, err)
		}
		socks = append(socks, p)
	}
	name := append([]byte{9}, "bulk.test"...)
	b.Run("direct", func(b *testing.B) {
		runTunnels(b, func() (net.Conn, error) { return net.Dial("tcp", ap.String()) }, nil)
	})
	b.Run("gateway", func(b *testing.B) {
		var mu sync.Mutex
		next := 0
		open := func() (net.Conn, error) {
			mu.Lock()
			sock := socks[next%benchSessions]
			next++
			mu.Unlock()
			c, err := net.Dial("unix", sock)
			if err != nil {
				return nil, err
			}
			if err := socksOpen(c, name, ap.Port()); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}
		runTunnels(b, open, func() {
			for i := range benchSessions {
				// >=: the previous op's handlers may still be closing.
				st, _ := m.Stats(fmt.Sprintf("s-bench-%d", i))
				if st.Open < benchPerSession {
					b.Fatalf("session %d has %d tunnels open, want %d", i, st.Open, benchPerSession)
				}
			}
		})
	})
}

// runTunnels runs the ops of BenchmarkEgressTunnels200 with open as the
// way to get one connection; check runs while all are open.
func runTunnels(b *testing.B, open func() (net.Conn, error), check func()) {
	const n = benchSessions * benchPerSession
	b.SetBytes(n * benchTunnelData)
	var openTotal time.Duration
	for b.Loop() {
		start := time.Now()
		conns := make([]net.Conn, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { conns[i], errs[i] = open() })
		}
		wg.Wait()
		openTotal += time.Since(start)
		for i, err := range errs {
			if err != nil {
				b.Fatalf("tunnel %d: %v", i, err)
			}
		}
		if check != nil {
			check()
		}
		for i, c := range conns {
			wg.Go(func() {
				defer c.Close()
				if _, err := c.Write([]byte{1}); err != nil {
					errs[i] = err
					return
				}
				got, err := io.Copy(io.Discard, c)
				if err == nil && got != benchTunnelData {
					err = fmt.Errorf("got %d bytes, want %d", got, benchTunnelData)
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				b.Fatalf("tunnel %d download: %v", i, err)
			}
		}
	}
	b.ReportMetric(float64(openTotal.Milliseconds())/float64(b.N), "ms-open-all")
}

// sendOnRequest is a loopback server that, on each connection, waits for
// one byte, sends size bytes and closes.
func sendOnRequest(b *testing.B, size int) net.Listener {
	buf := make([]byte, 64<<10) // only read from: shared by the connections
	return serveLoopback(b, func(c net.Conn) {
		var one [1]byte
		if _, err := io.ReadFull(c, one[:]); err != nil {
			return
		}
		for sent := 0; sent < size; {
			n, err := c.Write(buf[:min(len(buf), size-sent)])
			if err != nil {
				return
			}
			sent += n
		}
	})
}

// socksOpen runs a SOCKS5 CONNECT to a domain name on c; unlike
// socksDo it returns errors, so it may run off the benchmark's goroutine.
func socksOpen(c net.Conn, name []byte, port uint16) error {
	req := append([]byte{5, 1, 0, 5, 1, 0, atypDomain}, name...)
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		return fmt.Errorf("socks5 request: %w", err)
	}
	var rep [12]byte // method choice (2) + reply with an IPv4 address (10)
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		return fmt.Errorf("socks5 reply: %w", err)
	}
	if rep[0] != 5 || rep[1] != 0 || rep[3] != repSucceeded {
		return fmt.Errorf("socks5 reply %v", rep[:4])
	}
	return nil
}
