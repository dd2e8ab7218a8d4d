package egress

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"sync"
)

// Interceptor serves the connections of a session whose credentials are
// delivered by proxy (docs/proxy-mode.md): the egress gateway still
// decides, resolves and dials, but hands the stream to the interceptor
// instead of relaying it, so the interceptor can put the real credential
// on requests and keep placeholders from leaving for other hosts.
//
// Contract: the gateway calls Binds for every allowed CONNECT or SOCKS
// tunnel; for a bound host it answers the tunnel and calls ServeTunnel,
// which owns the stream until it returns. Every plain-http forward
// request of the session goes to ServeForward. dial opens a connection to
// the address the gateway checked (whatever address the interceptor
// passes is ignored); it is closed by the gateway when the session's
// gateway closes. The interceptor never dials anything else. Both serve
// methods return a reason ("" for none) that goes in the connection's
// audit record; it holds no secret and no URL path.
type Interceptor interface {
	// Binds reports whether host:port is one the session's credentials
	// are bound to (their TLS is terminated by ServeTunnel).
	Binds(host string, port int) bool
	// ServeTunnel serves a tunnel's stream: c is the sandbox's side, its
	// first bytes (a TLS ClientHello) may already sit in br.
	ServeTunnel(ctx context.Context, c net.Conn, br *bufio.Reader, host string, port int, dial Dialer) (reason string)
	// ServeForward answers one plain-http request (already read from br)
	// for host:port and closes the connection after it.
	ServeForward(ctx context.Context, c net.Conn, br *bufio.Reader, req *http.Request, host string, port int, dial Dialer) (reason string)
}

// Dialer opens a connection to the checked address of one decision.
type Dialer func(ctx context.Context) (net.Conn, error)

// intercept runs serve with the checked dial of d and fills rec.
func (g *Gateway) intercept(rec *Record, d Decision, serve func(Dialer) string) {
	var mu sync.Mutex
	addr := ""
	dial := func(context.Context) (net.Conn, error) {
		c, a, err := g.dial(d)
		if err != nil {
			return nil, err
		}
		mu.Lock()
		addr = a.String()
		mu.Unlock()
		return &trackedConn{Conn: c, g: g}, nil
	}
	reason := serve(dial)
	mu.Lock()
	rec.Addr = addr
	mu.Unlock()
	rec.Allowed, rec.Reason = true, reason
}

// trackedConn untracks itself on Close.
type trackedConn struct {
	net.Conn
	g    *Gateway
	once sync.Once
}

func (t *trackedConn) Close() error {
	err := t.Conn.Close()
	t.once.Do(func() { t.g.untrack(t.Conn) })
	return err
}
