//go:build failpoints && daemon

package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/egress"
)

// failpoints stops the daemon at the step named by CREDBROKER_FAILPOINT:
// it prints "FAILPOINT <step>" to stderr and blocks, so a test can SIGKILL
// it exactly there; with CREDBROKER_FAILPOINT_SLEEP (a duration) it sleeps
// that long and carries on instead, so a test can act in the middle of the
// step. Only in binaries built with -tags failpoints.
func failpoints() broker.Hooks {
	step := os.Getenv("CREDBROKER_FAILPOINT")
	if step == "" {
		return nil
	}
	sleep, _ := time.ParseDuration(os.Getenv("CREDBROKER_FAILPOINT_SLEEP"))
	return hang{step: step, sleep: sleep}
}

type hang struct {
	step  string
	sleep time.Duration
}

func (h hang) At(step string) {
	if step != h.step {
		return
	}
	fmt.Fprintf(os.Stderr, "FAILPOINT %s\n", step)
	if h.sleep > 0 {
		time.Sleep(h.sleep)
		return
	}
	select {}
}

// testClock is the daemon's clock for crash tests: the wall clock plus the
// duration written in the file CREDBROKER_CLOCK_OFFSET_FILE (for example
// "3h"), read again when it changes, so a test can make the clock jump
// forward under a running daemon. Only in binaries built with -tags
// failpoints; nil (the wall clock) when the variable is not set.
func testClock() func() time.Time {
	path := os.Getenv("CREDBROKER_CLOCK_OFFSET_FILE")
	if path == "" {
		return nil
	}
	c := &offsetClock{path: path}
	return c.now
}

type offsetClock struct {
	path string

	mu     sync.Mutex
	read   time.Time // when the file was last read
	offset time.Duration
}

func (c *offsetClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	wall := time.Now()
	if wall.Sub(c.read) > 50*time.Millisecond {
		c.read = wall
		if b, err := os.ReadFile(c.path); err == nil {
			if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil {
				c.offset = d
			}
		}
	}
	return wall.Add(c.offset)
}

// egressDial is the egress gateways' dialer for tests that prove a refused
// destination was never dialed: with CREDBROKER_EGRESS_DIAL_GUARD=1 it
// dials loopback addresses only (the tests' servers) and refuses any
// other, printing "EGRESS DIAL GUARD: <addr>" to stderr, which the test
// looks for. Only in binaries built with -tags failpoints; nil (the
// gateways' own dialer) when the variable is not set.
func egressDial() egress.DialFunc {
	if os.Getenv("CREDBROKER_EGRESS_DIAL_GUARD") != "1" {
		return nil
	}
	d := &net.Dialer{Timeout: 10 * time.Second}
	return func(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
		if !addr.Addr().IsLoopback() {
			fmt.Fprintf(os.Stderr, "EGRESS DIAL GUARD: %s\n", addr)
			return nil, fmt.Errorf("egress dial guard: %s is not loopback", addr)
		}
		return d.DialContext(ctx, "tcp", addr.String())
	}
}
