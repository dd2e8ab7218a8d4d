package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/credbroker/credbroker/broker/egress"
)

// handshakeTimeout bounds the sandbox's TLS handshake.
const handshakeTimeout = 10 * time.Second

// leakReportWait bounds how long a leak's report waits for its 403 to be
// written: a sandbox that does not read its answer does not delay the
// report (or the revocation that follows it).
const leakReportWait = 500 * time.Millisecond

// copyBuffer is the size of the buffers bodies are copied with: large
// enough that a big download costs few system calls and wake-ups.
const copyBuffer = 128 << 10

// buffers recycles the copy buffers of every session's proxy.
var buffers = &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, copyBuffer); return &b }}}

// bufferPool is an httputil.BufferPool over sync.Pool.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(s []byte) { b.p.Put(&s) }

// DeniedHeader is the egress gateway's refusal header.
const DeniedHeader = egress.DeniedHeader

var _ egress.Interceptor = (*Session)(nil)

// ServeTunnel implements egress.Interceptor: it terminates the sandbox's
// TLS with a leaf of the session CA for host (the ClientHello must name
// host) and serves HTTP/1.1 on it, each request rewritten and sent on
// over TLS verified against the real trust.
func (s *Session) ServeTunnel(ctx context.Context, c net.Conn, br *bufio.Reader, host string, port int, dial egress.Dialer) string {
	bs := s.matching(host, port)
	leaf, err := s.ca.leaf(host)
	if err != nil {
		return err.Error()
	}
	tc := tls.Server(&bufferedConn{Conn: c, r: br}, &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		GetCertificate: func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if !strings.EqualFold(strings.TrimSuffix(hi.ServerName, "."), host) {
				return nil, fmt.Errorf("the TLS server name %q is not %s (no domain fronting)", clip(hi.ServerName), host)
			}
			return leaf, nil
		},
	})
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := tc.HandshakeContext(ctx); err != nil {
		return "TLS handshake with the sandbox: " + err.Error()
	}
	_ = c.SetDeadline(time.Time{})
	tr := s.transport(host, bs, dial)
	defer tr.CloseIdleConnections()
	var reason reasonOnce
	rp := s.reverseProxy("https", host, port, bs, tr, &reason)
	serveOne(ctx, tc, rp)
	return reason.get()
}

// ServeForward implements egress.Interceptor: one plain-http request,
// checked for placeholders, rewritten if host is bound, and answered with
// the connection closing after it.
func (s *Session) ServeForward(ctx context.Context, c net.Conn, _ *bufio.Reader, req *http.Request, host string, port int, dial egress.Dialer) string {
	_ = c.SetReadDeadline(time.Time{}) // the body may take its time
	bs := s.matching(host, port)
	tr := s.transport(host, bs, dial)
	tr.DisableKeepAlives = true
	defer tr.CloseIdleConnections()
	var reason reasonOnce
	rp := s.reverseProxy("http", host, port, bs, tr, &reason)
	w := newOneShotWriter(c)
	req.RequestURI = ""
	req = req.WithContext(ctx)
	rp.ServeHTTP(w, req)
	w.finish()
	return reason.get()
}

// transport dials only through the gateway's checked dial and verifies
// the server against the bound provider's CA or the system roots.
func (s *Session) transport(host string, bs []binding, dial egress.Dialer) *http.Transport {
	return &http.Transport{
		DialContext:           func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		TLSClientConfig:       &tls.Config{ServerName: host, RootCAs: s.upstreamRoots(bs), MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   handshakeTimeout,
		ResponseHeaderTimeout: 0, // long polls and watches (kubectl get -w) wait as long as they like
		MaxIdleConnsPerHost:   4,
		ReadBufferSize:        copyBuffer,
		WriteBufferSize:       copyBuffer,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     false,
		Proxy:                 nil,
	}
}

// reverseProxy sends requests to scheme://host:port after prepare and
// redacts what comes back.
func (s *Session) reverseProxy(scheme, host string, port int, bs []binding, tr http.RoundTripper, reason *reasonOnce) *httputil.ReverseProxy {
	target := net.JoinHostPort(host, strconv.Itoa(port))
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host, pr.Out.Host = scheme, target, hostHeader(host, port, scheme)
			pr.Out.Header.Del("Forwarded")
			if err := s.prepare(pr.Out, host, port, bs); err != nil {
				// Checked again in the transport below, which refuses it.
				pr.Out = pr.Out.WithContext(context.WithValue(pr.Out.Context(), refuseKey{}, err))
			}
		},
		Transport:  refusingTransport{tr},
		BufferPool: buffers,
		// Streamed answers (chunked: watches, logs -f) are flushed at once
		// whatever this says; sized ones are written in full buffers.
		FlushInterval: 0,
		ModifyResponse: func(resp *http.Response) error {
			return s.redactResponse(resp)
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			var rf *refusal
			if errors.As(err, &rf) {
				reason.set(rf.Error())
				// Reported once the 403 is written (reporting a leak may end
				// the session, which closes this connection, and the
				// sandbox is owed its answer), or after leakReportWait.
				late := time.AfterFunc(leakReportWait, rf.reported)
				refuse(w, rf.Error())
				late.Stop()
				rf.reported()
				return
			}
			reason.set("upstream: " + err.Error())
			http.Error(w, "credbroker proxy: "+err.Error(), http.StatusBadGateway)
		},
	}
}

// refuse answers 403 with msg, sized and flushed, so the whole answer is
// on the connection before anything closes it.
func refuse(w http.ResponseWriter, msg string) {
	body := "credbroker proxy: " + msg + "\n"
	h := w.Header()
	h.Set(DeniedHeader, headerSafe(msg))
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusForbidden)
	_, _ = io.WriteString(w, body)
	_ = http.NewResponseController(w).Flush()
}

// hostHeader is host with the port when it is not the scheme's default.
func hostHeader(host string, port int, scheme string) string {
	if (scheme == "https" && port == 443) || (scheme == "http" && port == 80) {
		return host
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// refuseKey carries prepare's refusal to the transport.
type refuseKey struct{}

// refusingTransport fails the requests prepare refused, before dialing.
type refusingTransport struct{ http.RoundTripper }

func (t refusingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err, ok := r.Context().Value(refuseKey{}).(error); ok {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, err
	}
	return t.RoundTripper.RoundTrip(r)
}

// reasonOnce keeps the first reason a connection gave.
type reasonOnce struct {
	mu sync.Mutex
	s  string
}

func (r *reasonOnce) set(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.s == "" {
		r.s = s
	}
}

func (r *reasonOnce) get() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.s
}

// serveOne serves HTTP on one connection until it closes (or its
// context ends), upgrades included.
func serveOne(ctx context.Context, c net.Conn, h http.Handler) {
	done := make(chan struct{})
	var once sync.Once
	var handlers sync.WaitGroup
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			handlers.Add(1)
			defer handlers.Done()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: handshakeTimeout,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          nil,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed || st == http.StateHijacked {
				once.Do(func() { close(done) })
			}
		},
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	go func() { _ = srv.Serve(&oneListener{c: c}) }()
	select {
	case <-done:
	case <-ctx.Done():
		_ = c.Close()
		<-done
	}
	handlers.Wait() // an upgraded stream runs in its handler
	_ = srv.Close()
}

// oneListener hands out one connection, then blocks until closed.
type oneListener struct {
	mu     sync.Mutex
	c      net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *oneListener) init() { l.once.Do(func() { l.closed = make(chan struct{}) }) }

func (l *oneListener) Accept() (net.Conn, error) {
	l.init()
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.closed
	return nil, net.ErrClosed
}

func (l *oneListener) Close() error {
	l.init()
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

func (l *oneListener) Addr() net.Addr { return &net.UnixAddr{Name: "credbroker-proxy", Net: "unix"} }

// bufferedConn reads first what the gateway already buffered.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

// clip shortens what the sandbox sent before it is quoted back.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// headerSafe drops control characters.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
