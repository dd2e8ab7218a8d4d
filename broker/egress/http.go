package egress

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DeniedHeader carries the reason of a refusal and the config entry that
// would allow it.
const DeniedHeader = "X-Credbroker-Denied"

// proxyRequest is a request read from the sandbox: a forward-proxy
// request with an absolute http:// URI, or a CONNECT.
type proxyRequest struct {
	req     *http.Request
	connect bool
	host    string
	port    int
}

// readProxyRequest reads one request and checks its form.
func readProxyRequest(br *bufio.Reader) (proxyRequest, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return proxyRequest{}, fmt.Errorf("malformed request: %s", shortErr(err))
	}
	pr := proxyRequest{req: req}
	if req.Method == http.MethodConnect {
		pr.connect = true
		h, p, err := net.SplitHostPort(req.RequestURI)
		if err != nil || h == "" {
			return pr, fmt.Errorf("CONNECT needs host:port, got %q", clip(req.RequestURI))
		}
		pr.host, pr.port = h, portNumber(p)
		if pr.port == 0 {
			return pr, fmt.Errorf("CONNECT port %q is not a number from 1 to 65535", clip(p))
		}
		return pr, nil
	}
	u := req.URL
	if u == nil || u.Scheme != "http" || u.Host == "" {
		return pr, errors.New("the gateway forwards absolute http:// URIs; use CONNECT for https (set HTTPS_PROXY)")
	}
	pr.host, pr.port = u.Hostname(), 80
	if p := u.Port(); p != "" {
		if pr.port = portNumber(p); pr.port == 0 {
			return pr, fmt.Errorf("port %q is not a number from 1 to 65535", clip(p))
		}
	}
	if pr.host == "" {
		return pr, errors.New("the URI has no host")
	}
	return pr, nil
}

func portNumber(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return n
}

// clip shortens what the sandbox sent before it is quoted back.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

func (g *Gateway) serveHTTP(cc *clientConn, rec *Record) {
	pr, err := readProxyRequest(cc.br)
	rec.Proto, rec.Host, rec.Port = "http", clip(pr.host), pr.port
	if pr.connect {
		rec.Proto = "connect"
	}
	if err != nil {
		rec.Reason = err.Error()
		writeStatus(cc, http.StatusBadRequest, "", rec.Reason)
		return
	}
	cc.lift()
	d := g.cfg.Policy.Check(g.ctx, pr.host, pr.port)
	rec.Host, rec.Rule = clip(d.Host), d.Rule
	if !d.Allowed {
		rec.Reason = d.Reason
		writeStatus(cc, http.StatusForbidden, deniedValue(d), "credbroker egress: "+d.Reason)
		return
	}
	if ic := g.cfg.Intercept; ic != nil {
		switch {
		case !pr.connect:
			g.intercept(rec, d, func(dial Dialer) string {
				return ic.ServeForward(g.ctx, cc, cc.br, pr.req, d.Host, pr.port, dial)
			})
			return
		case ic.Binds(d.Host, pr.port):
			if _, err := io.WriteString(cc, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
				rec.Reason = "answer CONNECT: " + shortErr(err)
				return
			}
			g.intercept(rec, d, func(dial Dialer) string {
				return ic.ServeTunnel(g.ctx, cc, cc.br, d.Host, pr.port, dial)
			})
			return
		}
	}
	up, addr, err := g.dial(d)
	if err != nil {
		rec.Reason = err.Error()
		writeStatus(cc, http.StatusBadGateway, "", "credbroker egress: "+err.Error())
		return
	}
	defer g.untrack(up)
	defer up.Close()
	rec.Addr = addr.String()
	if pr.connect {
		g.tunnel(cc, up, d, rec)
		return
	}
	_ = cc.SetReadDeadline(time.Time{})
	rec.Allowed = true
	rec.BytesUp, rec.BytesDown, err = forward(cc, up, pr.req)
	if err != nil {
		rec.Reason = err.Error()
	}
}

// deniedValue is the X-Credbroker-Denied header: what was refused and,
// when a rule would allow it, which.
func deniedValue(d Decision) string {
	v := d.Reason
	switch {
	case d.Fix != "":
		v += "; " + d.Fix
	case d.Rule != "":
		v += "; by " + d.Rule
	}
	return v
}

// writeStatus answers with a short text body and closes.
func writeStatus(w io.Writer, code int, denied, body string) {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	if denied != "" {
		fmt.Fprintf(&b, "%s: %s\r\n", DeniedHeader, headerSafe(denied))
	}
	body = headerSafe(body) + "\n"
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	_, _ = io.WriteString(w, b.String())
}

// headerSafe drops control characters, so nothing the sandbox sent can
// split the response.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return -1
		}
		return r
	}, s)
}

// hopByHop are the headers a proxy does not forward.
var hopByHop = []string{"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// stripHopByHop removes hop-by-hop headers, those named by Connection,
// and every Proxy-* header.
func stripHopByHop(h http.Header) {
	for _, v := range h.Values("Connection") {
		for name := range strings.SplitSeq(v, ",") {
			h.Del(strings.TrimSpace(name))
		}
	}
	for _, name := range hopByHop {
		h.Del(name)
	}
	for name := range h {
		if strings.HasPrefix(name, "Proxy-") {
			delete(h, name)
		}
	}
}

// forward sends one request in origin form to the server and relays its
// response; the connection closes after it.
func forward(client net.Conn, up net.Conn, req *http.Request) (upN, downN int64, err error) {
	upW, downW := &countWriter{w: up}, &countWriter{w: client}
	stripHopByHop(req.Header)
	req.Host = req.URL.Host // the URI names the server, not a Host header
	req.Close = true
	if err := req.Write(upW); err != nil {
		writeStatus(downW, http.StatusBadGateway, "", "credbroker egress: send the request: "+err.Error())
		return upW.n, downW.n, fmt.Errorf("send request: %w", err)
	}
	br := bufio.NewReader(up)
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			writeStatus(downW, http.StatusBadGateway, "", "credbroker egress: read the response: "+shortErr(err))
			return upW.n, downW.n, fmt.Errorf("read response: %w", err)
		}
		final := resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols
		if final {
			stripHopByHop(resp.Header)
			resp.Close = true
		}
		err = resp.Write(downW)
		resp.Body.Close()
		if err != nil || final {
			return upW.n, downW.n, err
		}
	}
}

// tunnel answers a CONNECT and relays the stream. For a name, the TLS
// ClientHello must name the same host (no domain fronting through an
// allowed host); an address allowed by an IP rule needs no server name.
func (g *Gateway) tunnel(cc *clientConn, up net.Conn, d Decision, rec *Record) {
	if _, err := io.WriteString(cc, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		rec.Reason = "answer CONNECT: " + shortErr(err)
		return
	}
	if _, err := netip.ParseAddr(d.Host); err != nil {
		_ = cc.SetReadDeadline(time.Now().Add(g.cfg.HeaderTimeout))
		hello, reason := checkHello(cc.br, d.Host)
		if reason != "" {
			rec.Reason, rec.Rule = reason, ""
			return
		}
		n, err := up.Write(hello)
		rec.BytesUp += int64(n)
		if err != nil {
			rec.Reason = "send ClientHello: " + shortErr(err)
			return
		}
	}
	_ = cc.SetReadDeadline(time.Time{})
	rec.Allowed = true
	u, dn := relay(cc, cc.br, up, nil)
	rec.BytesUp += u
	rec.BytesDown += dn
}

// checkHello reads the ClientHello and returns it, or why the tunnel is
// refused.
func checkHello(r io.Reader, host string) ([]byte, string) {
	hello, sni, err := readClientHello(r)
	switch {
	case err != nil:
		return nil, fmt.Sprintf("tunnel to %s refused: %s (plain TCP goes through SOCKS5)", host, shortErr(err))
	case sni == "":
		return nil, fmt.Sprintf("tunnel to %s refused: the TLS ClientHello names no server", host)
	case sni != host:
		return nil, fmt.Sprintf("tunnel to %s refused: the TLS server name %q differs (no domain fronting)", host, clip(sni))
	}
	return hello, ""
}
