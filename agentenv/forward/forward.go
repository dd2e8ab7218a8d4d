// Package forward is the sandbox side of the egress gateway: a forwarder
// that listens on the sandbox's loopback (an HTTP/CONNECT port and a SOCKS5
// port) and relays every accepted connection, byte for byte and both ways,
// to the session's gateway socket, a Unix socket the daemon serves and the
// sandbox engine mounts into the sandbox. The gateway tells the protocols
// apart by the first byte (0x05 is SOCKS5), so the forwarder parses
// nothing: the two ports exist only because clients take an HTTP proxy
// and a SOCKS proxy from different variables.
//
// The sandbox has no interface but loopback, so the forwarder is a
// convenience, not the enforcement: a client that ignores the proxy
// variables reaches nothing at all. This package must not import the
// broker or any provider: it runs in the sandbox binary.
package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"
)

// Default listen addresses: the well-known proxy ports on loopback.
const (
	DefaultHTTPAddr  = "127.0.0.1:3128"
	DefaultSOCKSAddr = "127.0.0.1:1080"
)

// dialTimeout bounds the connect to the gateway socket; a live daemon
// answers a local connect at once.
const dialTimeout = 5 * time.Second

// Config says where to listen and where to relay.
type Config struct {
	// Socket is the gateway's Unix socket.
	Socket string
	// HTTPAddr and SOCKSAddr are the listen addresses; "" means the
	// defaults. When one is taken, a free port on the same host is used
	// instead (see Forwarder.HTTPAddr, SOCKSAddr).
	HTTPAddr, SOCKSAddr string
	// Logger gets one line per failed relay; nil discards.
	Logger *slog.Logger
}

// Forwarder relays connections from its two listeners to the gateway.
type Forwarder struct {
	socket      string
	log         *slog.Logger
	http, socks net.Listener

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Listen binds both listeners. It does not contact the gateway: a
// connection that finds the gateway gone is refused on its own.
func Listen(cfg Config) (*Forwarder, error) {
	if cfg.Socket == "" {
		return nil, errors.New("forward: no gateway socket given")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h, err := listen(cfg.HTTPAddr, DefaultHTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("forward: http port: %w", err)
	}
	s, err := listen(cfg.SOCKSAddr, DefaultSOCKSAddr)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("forward: socks port: %w", err)
	}
	return &Forwarder{socket: cfg.Socket, log: log, http: h, socks: s, conns: map[net.Conn]struct{}{}}, nil
}

// listen binds addr (def when ""), or a free port on its host when the
// port is taken (another proxy in the sandbox, or a test).
func listen(addr, def string) (net.Listener, error) {
	if addr == "" {
		addr = def
	}
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if errors.Is(err, syscall.EADDRINUSE) {
		host, _, _ := net.SplitHostPort(addr)
		return lc.Listen(context.Background(), "tcp", net.JoinHostPort(host, "0"))
	}
	return l, err
}

// HTTPAddr is the address the HTTP/CONNECT listener is bound to.
func (f *Forwarder) HTTPAddr() string { return f.http.Addr().String() }

// SOCKSAddr is the address the SOCKS5 listener is bound to.
func (f *Forwarder) SOCKSAddr() string { return f.socks.Addr().String() }

// Serve relays connections until ctx is done, then closes the listeners
// and every open relay and returns once all are gone.
func (f *Forwarder) Serve(ctx context.Context) error {
	errc := make(chan error, 2)
	for _, l := range []net.Listener{f.http, f.socks} {
		go func() { errc <- f.accept(ctx, l) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	f.Close()
	f.wg.Wait()
	return err
}

// Close stops the listeners and closes every open relay.
func (f *Forwarder) Close() {
	f.http.Close()
	f.socks.Close()
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
	f.conns = nil // track refuses from now on
}

func (f *Forwarder) accept(ctx context.Context, l net.Listener) error {
	for {
		c, err := l.Accept()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// EMFILE and the like: back off rather than spin.
			f.log.Warn("forward: accept", "error", err.Error())
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !f.track(c) {
			c.Close()
			return nil
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.handle(ctx, c)
		}()
	}
}

// track registers c, or reports false once the forwarder is closing.
func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.conns == nil {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// handle dials the gateway for one client connection and relays.
func (f *Forwarder) handle(ctx context.Context, c net.Conn) {
	defer c.Close()
	d := net.Dialer{Timeout: dialTimeout}
	up, err := d.DialContext(ctx, "unix", f.socket)
	if err != nil {
		// Nothing was sent upstream; the client sees its connection
		// closed, as with any proxy that cannot reach its upstream.
		f.log.Warn("forward: egress gateway unreachable (has the session ended?)", "socket", f.socket, "error", err.Error())
		return
	}
	if !f.track(up) {
		up.Close()
		return
	}
	defer f.untrack(up)
	defer up.Close()
	Relay(c, up)
}

// halfCloser is a connection whose write side can be shut on its own.
type halfCloser interface {
	net.Conn
	CloseWrite() error
}

// Relay copies a→b and b→a until both directions have ended. When one
// side's reader reaches EOF the other side's write half is shut
// (CloseWrite), so a client that half-closes (curl sending a request
// body, `nc -N`) still gets the reply; an error in either direction closes
// both connections so the other copy cannot hang.
func Relay(a, b net.Conn) {
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		defer func() { done <- struct{}{} }()
		_, err := io.Copy(dst, src)
		if hc, ok := dst.(halfCloser); ok && err == nil {
			if hc.CloseWrite() == nil {
				return
			}
		}
		a.Close()
		b.Close()
	}
	go pipe(b, a)
	go pipe(a, b)
	<-done
	<-done
}
