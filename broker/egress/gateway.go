// Package egress is the daemon side of the egress gateway: one Unix socket
// per session, served by the broker daemon, through which the session's
// sandbox reaches only the hosts its role allows. It speaks HTTP forward
// proxying, CONNECT tunnels and SOCKS5 CONNECT on the same socket (the
// first byte tells them apart), resolves names itself and dials only the
// addresses it checked. See docs/egress.md.
package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Config.
const (
	DefaultHeaderTimeout = 10 * time.Second
	DefaultMaxConns      = 256
	dialTimeout          = 10 * time.Second
)

// DialFunc opens a TCP connection to a checked address. Tests install one
// that fails the test when a refused address is dialed.
type DialFunc func(ctx context.Context, addr netip.AddrPort) (net.Conn, error)

// Record is what the gateway reports about one connection, for the audit
// log. It never holds a URL path or query.
type Record struct {
	Session string
	Role    string
	// Proto is "http", "connect" or "socks5" ("" when the request could
	// not be read).
	Proto   string
	Host    string
	Port    int
	Addr    string // the address dialed, "" when none
	Allowed bool
	Rule    string
	Reason  string
	// BytesUp went from the sandbox to the server, BytesDown back.
	BytesUp, BytesDown int64
	Duration           time.Duration
}

// Config configures one session's gateway.
type Config struct {
	Session string
	Role    string
	// UID may connect (and root); the socket is made for it.
	UID    int
	Policy *Policy
	// Dial defaults to a net.Dialer with a 10s timeout.
	Dial DialFunc
	// Report gets one Record per connection when it closes.
	Report func(Record)
	Logger *slog.Logger
	// HeaderTimeout bounds reading a request (and a tunnel's TLS
	// ClientHello); default 10s.
	HeaderTimeout time.Duration
	// MaxConns bounds the connections open at once; default 256.
	MaxConns int
	// Intercept, when set, serves the session's bound hosts and plain-http
	// requests (proxy delivery).
	Intercept Interceptor
}

// Stats counts a gateway's connections since it opened.
type Stats struct {
	Allowed int64 `json:"allowed"`
	Denied  int64 `json:"denied"`
	Open    int64 `json:"open"`
}

// Gateway serves one session's socket.
type Gateway struct {
	cfg    Config
	ln     *net.UnixListener
	path   string
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup

	allowed, denied, open atomic.Int64
}

// Listen creates the socket at path (its directory must exist and be the
// daemon's) and serves it until Close.
func Listen(path string, cfg Config) (*Gateway, error) {
	if cfg.Policy == nil {
		return nil, errors.New("egress: no policy")
	}
	if cfg.HeaderTimeout <= 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Dial == nil {
		d := net.Dialer{Timeout: dialTimeout}
		cfg.Dial = func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", a.String())
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ln, err := bindSocket(path, cfg.UID)
	if err != nil {
		return nil, err
	}
	g := &Gateway{cfg: cfg, ln: ln, path: path, conns: map[net.Conn]struct{}{}}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.wg.Go(g.acceptLoop)
	return g, nil
}

// bindSocket binds in a private 0700 directory, sets the socket's owner
// and mode, and only then renames it to path: the socket is never
// reachable by path with looser permissions (no process-wide umask).
func bindSocket(path string, uid int) (*net.UnixListener, error) {
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".b")
	if err != nil {
		return nil, fmt.Errorf("egress: create socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "unix", bound)
	if err != nil {
		return nil, fmt.Errorf("egress: listen: %w", err)
	}
	ln := l.(*net.UnixListener)
	ln.SetUnlinkOnClose(false) // the name moves; Close removes the final path
	fail := func(what string, err error) (*net.UnixListener, error) {
		ln.Close()
		return nil, fmt.Errorf("egress: %s %s: %w", what, path, err)
	}
	mode := os.FileMode(0o600)
	switch euid := os.Geteuid(); {
	case uid == euid:
	case euid == 0:
		if err := os.Lchown(bound, uid, -1); err != nil {
			return fail("chown socket", err)
		}
	default:
		// A daemon that is not root cannot give the socket away: it is
		// open to all, and each connection's SO_PEERCRED uid is checked.
		mode = 0o666
	}
	if err := os.Chmod(bound, mode); err != nil {
		return fail("chmod socket", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fail("remove stale socket", err)
	}
	if err := os.Rename(bound, path); err != nil {
		return fail("place socket", err)
	}
	return ln, nil
}

// Path is the socket's path.
func (g *Gateway) Path() string { return g.path }

// Stats returns the connection counts.
func (g *Gateway) Stats() Stats {
	return Stats{Allowed: g.allowed.Load(), Denied: g.denied.Load(), Open: g.open.Load()}
}

// Close stops accepting, closes every open connection at once (a download
// in flight stops), waits for their handlers and removes the socket.
func (g *Gateway) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	g.cancel()
	err := g.ln.Close()
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	if rerr := os.Remove(g.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// track registers c so Close can close it; false once the gateway closed.
func (g *Gateway) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *Gateway) untrack(c net.Conn) {
	g.mu.Lock()
	delete(g.conns, c)
	g.mu.Unlock()
}

func (g *Gateway) acceptLoop() {
	for {
		c, err := g.ln.AcceptUnix()
		if err != nil {
			if g.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			g.cfg.Logger.Error("egress: accept", "session", g.cfg.Session, "err", err)
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if g.open.Add(1) > int64(g.cfg.MaxConns) || !g.track(c) {
			g.open.Add(-1)
			c.Close()
			g.finish(Record{Reason: fmt.Sprintf("more than %d connections open", g.cfg.MaxConns)}, time.Now())
			continue
		}
		g.wg.Go(func() {
			defer g.open.Add(-1)
			defer g.untrack(c)
			defer c.Close()
			g.serveConn(c)
		})
	}
}

// finish counts and reports one connection.
func (g *Gateway) finish(rec Record, start time.Time) {
	rec.Session, rec.Role, rec.Duration = g.cfg.Session, g.cfg.Policy.Role(), time.Since(start)
	if rec.Allowed {
		g.allowed.Add(1)
	} else {
		g.denied.Add(1)
	}
	if g.cfg.Report != nil {
		g.cfg.Report(rec)
	}
}

// dial connects to the first checked address that answers. The returned
// conn is tracked, so Close closes it.
func (g *Gateway) dial(d Decision) (net.Conn, netip.AddrPort, error) {
	var errs []error
	for _, a := range d.Addrs {
		ap := netip.AddrPortFrom(a, uint16(d.Port))
		c, err := g.cfg.Dial(g.ctx, ap)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !g.track(c) {
			c.Close()
			return nil, ap, errors.New("the session's gateway is closing")
		}
		return c, ap, nil
	}
	return nil, netip.AddrPort{}, fmt.Errorf("connect to %s: %w", d.Target(), errors.Join(errs...))
}
