package broker

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// socketFile returns the fd of a fresh socket as systemd would pass it;
// the socket file stays when the test's own listener is closed.
func socketFile(t *testing.T, network, addr string) *os.File {
	t.Helper()
	var f *os.File
	var err error
	switch network {
	case "unix":
		var l *net.UnixListener
		l, err = net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		if err == nil {
			l.SetUnlinkOnClose(false)
			f, err = l.File()
			l.Close()
		}
	case "unixgram":
		var c *net.UnixConn
		c, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
		if err == nil {
			f, err = c.File()
			c.Close()
		}
	case "tcp":
		var l *net.TCPListener
		l, err = net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err == nil {
			f, err = l.File()
			l.Close()
		}
	}
	if err != nil {
		t.Fatalf("%s socket: %v", network, err)
	}
	return f
}

func TestActivatedListener(t *testing.T) {
	tests := []struct {
		name     string
		sockets  []string // network:where, where is "sock" (broker.socket) or "other"
		shared   bool
		wantErr  string
		wantMode os.FileMode // of the socket file
		wantDir  os.FileMode
	}{
		{name: "unix stream at broker.socket", sockets: []string{"unix:sock"}, wantMode: 0o600, wantDir: 0o700},
		{name: "shared", sockets: []string{"unix:sock"}, shared: true, wantMode: 0o666, wantDir: 0o711},
		{name: "another path", sockets: []string{"unix:other"}, wantErr: "but broker.socket is"},
		{name: "datagram", sockets: []string{"unixgram:sock"}, wantErr: "not a listening Unix stream socket"},
		{name: "tcp port", sockets: []string{"tcp:"}, wantErr: "not a listening Unix stream socket"},
		{name: "two sockets", sockets: []string{"unix:sock", "unix:other"}, wantErr: "systemd passed 2 sockets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, "broker.sock")
			var files []*os.File
			for _, s := range tt.sockets {
				network, where, _ := strings.Cut(s, ":")
				addr := map[string]string{"sock": path, "other": filepath.Join(dir, "other.sock")}[where]
				files = append(files, socketFile(t, network, addr))
			}
			if tt.wantMode != 0 {
				_ = os.Chmod(path, 0o777) // as a unit's SocketMode=0777 would leave it
			}
			l, err := activated(files, path, tt.shared)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			for p, want := range map[string]os.FileMode{path: tt.wantMode, dir: tt.wantDir} {
				if st, err := os.Stat(p); err != nil || st.Mode().Perm() != want {
					t.Errorf("%s: mode %v (err %v), want %v", p, st.Mode().Perm(), err, want)
				}
			}
			// It serves: a client connects and is accepted.
			go func() {
				if c, err := net.Dial("unix", path); err == nil {
					c.Close()
				}
			}()
			c, err := l.Accept()
			if err != nil {
				t.Fatalf("accept on the activated listener: %v", err)
			}
			c.Close()
		})
	}
}

// TestWatchdogOnlyWhileLoopTurns: no WATCHDOG=1 while the loop's last turn
// is older than the watchdog allows; pings again once it turns.
func TestWatchdogOnlyWhileLoopTurns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	w := &watchdog{interval: 100 * time.Millisecond}
	w.last.Store(time.Now().Add(-time.Minute).UnixNano()) // a stuck loop
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.run(ctx, log) })
	defer func() { cancel(); wg.Wait() }()

	buf := make([]byte, 256)
	_ = conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if n, err := conn.Read(buf); err == nil {
		t.Fatalf("stuck loop, yet the watchdog sent %q", buf[:n])
	}
	w.beat()
	_ = conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := conn.Read(buf)
	if err != nil || string(buf[:n]) != "WATCHDOG=1" {
		t.Fatalf("after a turn of the loop: %q, %v; want WATCHDOG=1", buf[:n], err)
	}
}
