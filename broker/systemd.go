package broker

// What a systemd service of Type=notify started by a .socket unit needs
// from the daemon: the listener systemd passes (socket activation), and the
// sd_notify messages READY=1, RELOADING=1, STOPPING=1 and WATCHDOG=1.
// Outside systemd (no LISTEN_PID, no NOTIFY_SOCKET) all of it is a no-op.

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/activation"
	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// listen returns the daemon's listener: the socket systemd passed when
// LISTEN_PID names this process, else one of its own (Listen). The
// LISTEN_* variables are cleared either way, so nothing the daemon starts
// takes them for its own.
func listen(path string, shared bool, log *slog.Logger) (net.Listener, error) {
	if pid := os.Getenv("LISTEN_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		log.Warn("LISTEN_PID names another process: not socket-activated, creating the socket", "listen_pid", pid, "socket", path)
	}
	files := activation.Files(true)
	if len(files) == 0 {
		return Listen(path, shared)
	}
	l, err := activated(files, path, shared)
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	log.Info("using the socket systemd passed (socket activation)", "socket", path)
	return l, nil
}

// activated checks that systemd passed exactly one listening Unix stream
// socket, bound at path, and gives the socket file the mode Listen would:
// 0600, or 0666 in a 0711 dir when shared. The peer uid of every request
// is still checked by the server, whatever the file's mode.
func activated(files []*os.File, path string, shared bool) (net.Listener, error) {
	defer func() {
		for _, f := range files {
			f.Close() // net.FileListener dups the fd
		}
	}()
	if len(files) != 1 {
		return nil, fmt.Errorf("systemd passed %d sockets, want 1: give the .socket unit exactly one ListenStream=", len(files))
	}
	if err := checkStreamListener(files[0]); err != nil {
		return nil, err
	}
	l, err := net.FileListener(files[0])
	if err != nil {
		return nil, fmt.Errorf("fd 3 (%s): %w", files[0].Name(), err)
	}
	ul, ok := l.(*net.UnixListener)
	if !ok {
		l.Close()
		return nil, fmt.Errorf("fd 3 is a %s socket on %s, want a Unix socket: ListenStream= must name a path such as %s", l.Addr().Network(), l.Addr(), path)
	}
	ul.SetUnlinkOnClose(false) // the socket is systemd's: it outlives this process
	if got := ul.Addr().String(); filepath.Clean(got) != filepath.Clean(path) {
		l.Close()
		return nil, fmt.Errorf("systemd passed a socket on %q but broker.socket is %q: clients would not find it; make ListenStream= and broker.socket (or --socket) the same path", got, path)
	}
	if err := socketMode(path, shared); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// checkStreamListener checks that f is a listening AF_UNIX SOCK_STREAM
// socket: net.FileListener would also wrap a datagram socket.
func checkStreamListener(f *os.File) error {
	fd := int(f.Fd())
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("fd 3 (%s) is not a socket: %w", f.Name(), err)
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("fd 3 (%s): read its type: %w", f.Name(), err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return fmt.Errorf("fd 3 (%s): %w", f.Name(), err)
	}
	if domain != unix.AF_UNIX || typ != unix.SOCK_STREAM || acc != 1 {
		return fmt.Errorf("fd 3 (%s) is not a listening Unix stream socket (domain %d, type %d, listening %v): use ListenStream=/path, not ListenDatagram= or a port, and Accept=no",
			f.Name(), domain, typ, acc == 1)
	}
	return nil
}

// socketMode sets the activated socket's file mode as Listen sets its own.
// A unit's SocketMode= wider than that is narrowed, so a default
// SocketMode=0666 does not open the socket to every user.
func socketMode(path string, shared bool) error {
	want := os.FileMode(0o600)
	if shared {
		want = 0o666
		if err := os.Chmod(filepath.Dir(path), 0o711); err != nil {
			return fmt.Errorf("chmod socket dir %s 0711 (broker.allowed_uids is set): %w", filepath.Dir(path), err)
		}
	}
	st, err := os.Lstat(path)
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("%s is not a socket (mode %s)", path, st.Mode())
	}
	if st.Mode().Perm() == want {
		return nil
	}
	if err := os.Chmod(path, want); err != nil {
		return fmt.Errorf("chmod %s %#o: %w (set SocketUser= to the daemon's user and SocketMode=%#o in the .socket unit)", path, want, err, want)
	}
	return nil
}

// notify sends state to systemd when NOTIFY_SOCKET is set; a failure is
// logged, never fatal: the daemon works without a supervisor.
func notify(log *slog.Logger, state string) {
	sent, err := daemon.SdNotify(false, state)
	switch {
	case err != nil:
		log.Warn("sd_notify", "state", state, "err", err)
	case sent && state != daemon.SdNotifyWatchdog:
		log.Debug("sd_notify", "state", state)
	}
}

// notifyReloading tells systemd a reload started. systemd 253 and later
// want MONOTONIC_USEC (CLOCK_MONOTONIC, in µs) with RELOADING=1, to match
// it to the reload they asked for; older ones ignore it.
func notifyReloading(log *slog.Logger) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		notify(log, "RELOADING=1")
		return
	}
	us := ts.Sec*1_000_000 + ts.Nsec/1_000
	notify(log, "RELOADING=1\nMONOTONIC_USEC="+strconv.FormatInt(us, 10))
}

// watchdog pings systemd (WATCHDOG=1) at half the unit's WatchdogSec while
// the broker's loop is alive: the loop calls beat on every turn, and a
// loop stuck longer than the watchdog interval gets no more pings, so
// systemd restarts the daemon. A nil *watchdog (no WATCHDOG_USEC) does
// nothing.
type watchdog struct {
	interval time.Duration
	last     atomic.Int64 // unix nanoseconds of the loop's last turn
}

// newWatchdog reads WATCHDOG_USEC (and WATCHDOG_PID); nil when systemd
// asked for no watchdog.
func newWatchdog(log *slog.Logger) *watchdog {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Warn("systemd watchdog settings ignored", "err", err)
		return nil
	}
	if d <= 0 {
		return nil
	}
	w := &watchdog{interval: d}
	w.beat()
	log.Info("systemd watchdog on", "interval", d.String())
	return w
}

// beat records that the loop is turning.
func (w *watchdog) beat() {
	if w != nil {
		w.last.Store(time.Now().UnixNano())
	}
}

// stale is how long the loop may go without a turn before the pings stop:
// the watchdog interval, but never less than a few of the loop's own
// shortest period (backlogRetry), which would stop pings from a healthy
// loop.
func (w *watchdog) stale() time.Duration {
	return max(w.interval, 3*backlogRetry)
}

// run pings until ctx ends.
func (w *watchdog) run(ctx context.Context, log *slog.Logger) {
	if w == nil {
		return
	}
	t := time.NewTicker(w.interval / 2)
	defer t.Stop()
	warned := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		age := time.Since(time.Unix(0, w.last.Load()))
		if age > w.stale() {
			if !warned {
				log.Error("the broker's loop has not turned: no more watchdog pings, systemd will restart the daemon", "since", age.Round(time.Second).String())
				warned = true
			}
			continue
		}
		warned = false
		notify(log, daemon.SdNotifyWatchdog)
	}
}
