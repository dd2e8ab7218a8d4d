package main

import (
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// notifySocket listens on a unixgram socket, as systemd's NOTIFY_SOCKET,
// and returns its path and the messages that arrive on it.
func notifySocket(t *testing.T, dir string) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(dir, "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan string, 256)
	go func() {
		defer close(msgs)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

// nextNotify returns the next message holding line (one of its lines),
// and the messages skipped before it.
func nextNotify(t *testing.T, msgs <-chan string, line string, limit time.Duration) (skipped []string) {
	t.Helper()
	deadline := time.After(limit)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("notify socket closed before %q", line)
			}
			for _, l := range strings.Split(m, "\n") {
				if l == line {
					return skipped
				}
			}
			skipped = append(skipped, m)
		case <-deadline:
			t.Fatalf("no %q on the notify socket within %s (got %q)", line, limit, skipped)
		}
	}
}

// TestE2ESystemdNotify: READY=1 once the socket serves, WATCHDOG=1 at half
// of WATCHDOG_USEC, STOPPING=1 on SIGTERM, as Type=notify with WatchdogSec
// expects.
func TestE2ESystemdNotify(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	path, msgs := notifySocket(t, e.dir)
	d := e.start(t, "daemon", []string{brokerTokenEnv + "=" + vaulttest.RootToken,
		"NOTIFY_SOCKET=" + path, "WATCHDOG_USEC=1000000"}, "serve", "--log-level", "debug")

	for _, m := range nextNotify(t, msgs, "READY=1", 30*time.Second) {
		if m != "WATCHDOG=1" {
			t.Errorf("before READY=1 the daemon sent %q", m)
		}
	}
	// Ready means serving: the first request after READY=1 is answered.
	if r := e.cli(t, "status"); r.code != 0 {
		t.Fatalf("status right after READY=1: %s", r)
	}
	// A 1s watchdog: a ping each 0.5s while the loop turns.
	start, pings := time.Now(), 0
	for pings < 4 {
		if skipped := nextNotify(t, msgs, "WATCHDOG=1", 3*time.Second); len(skipped) > 0 {
			t.Errorf("unexpected messages between pings: %q", skipped)
		}
		pings++
	}
	if el := time.Since(start); el > 8*time.Second {
		t.Errorf("4 watchdog pings took %s, want about 2s", el)
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	nextNotify(t, msgs, "STOPPING=1", 15*time.Second)
	if code := d.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("daemon exited %d on SIGTERM, want 0\nstderr:\n%s", code, d.stderr)
	}
}

// TestE2ESystemdNoWatchdogForAnotherPID: WATCHDOG_USEC meant for another
// process (WATCHDOG_PID) starts no watchdog.
func TestE2ESystemdNoWatchdogForAnotherPID(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	path, msgs := notifySocket(t, e.dir)
	e.serve(t, "NOTIFY_SOCKET="+path, "WATCHDOG_USEC=1000000", "WATCHDOG_PID=1")
	nextNotify(t, msgs, "READY=1", 30*time.Second)
	select {
	case m := <-msgs:
		t.Fatalf("WATCHDOG_PID names another process, yet the daemon sent %q", m)
	case <-time.After(2 * time.Second):
	}
}
