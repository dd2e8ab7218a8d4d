package egress

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// SOCKS5 constants (RFC 1928).
const (
	socksVersion    = 0x05
	socksNoAuth     = 0x00
	socksNoMethod   = 0xff
	socksConnect    = 0x01
	atypIPv4        = 0x01
	atypDomain      = 0x03
	atypIPv6        = 0x04
	repSucceeded    = 0x00
	repFailure      = 0x01
	repNotAllowed   = 0x02
	repHostUnreach  = 0x04
	repRefused      = 0x05
	repCmdUnsupp    = 0x07
	repAtypUnsupp   = 0x08
	socksHelloLimit = 255
)

// socksError is a SOCKS5 request error with the reply code to send.
type socksError struct {
	code byte
	msg  string
}

func (e *socksError) Error() string { return e.msg }

// readSOCKS runs the SOCKS5 greeting (no authentication only) and reads
// the request. It writes the method choice to w; the reply is the
// caller's. It returns the host (a name or an address) and port.
func readSOCKS(r *bufio.Reader, w io.Writer) (string, int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return "", 0, fmt.Errorf("socks5 greeting: %s", shortErr(err))
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return "", 0, fmt.Errorf("socks5 greeting: %s", shortErr(err))
	}
	choice := byte(socksNoMethod)
	for _, m := range methods {
		if m == socksNoAuth {
			choice = socksNoAuth
		}
	}
	if _, err := w.Write([]byte{socksVersion, choice}); err != nil {
		return "", 0, fmt.Errorf("socks5 greeting: %s", shortErr(err))
	}
	if choice == socksNoMethod {
		return "", 0, errors.New("socks5: the client offers no method without authentication")
	}
	var req [4]byte
	if _, err := io.ReadFull(r, req[:]); err != nil {
		return "", 0, fmt.Errorf("socks5 request: %s", shortErr(err))
	}
	if req[0] != socksVersion {
		return "", 0, &socksError{repFailure, fmt.Sprintf("socks5 request: version %d", req[0])}
	}
	host, err := readSOCKSAddr(r, req[3])
	if err != nil {
		return "", 0, err
	}
	var pb [2]byte
	if _, err := io.ReadFull(r, pb[:]); err != nil {
		return "", 0, fmt.Errorf("socks5 request: %s", shortErr(err))
	}
	port := int(binary.BigEndian.Uint16(pb[:]))
	if req[1] != socksConnect {
		return host, port, &socksError{repCmdUnsupp, fmt.Sprintf("socks5 command %d is not supported (only CONNECT)", req[1])}
	}
	return host, port, nil
}

// readSOCKSAddr reads DST.ADDR of address type atyp.
func readSOCKSAddr(r *bufio.Reader, atyp byte) (string, error) {
	switch atyp {
	case atypIPv4, atypIPv6:
		b := make([]byte, 4)
		if atyp == atypIPv6 {
			b = make([]byte, 16)
		}
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("socks5 address: %s", shortErr(err))
		}
		a, _ := netip.AddrFromSlice(b)
		return a.Unmap().String(), nil
	case atypDomain:
		n, err := r.ReadByte()
		if err != nil {
			return "", fmt.Errorf("socks5 address: %s", shortErr(err))
		}
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return "", fmt.Errorf("socks5 address: %s", shortErr(err))
		}
		return string(b), nil
	default:
		return "", &socksError{repAtypUnsupp, fmt.Sprintf("socks5 address type %d is not supported", atyp)}
	}
}

// socksReply sends a reply with an empty bound address.
func socksReply(w io.Writer, code byte) {
	_, _ = w.Write([]byte{socksVersion, code, 0, atypIPv4, 0, 0, 0, 0, 0, 0})
}

func (g *Gateway) serveSOCKS(cc *clientConn, rec *Record) {
	host, port, err := readSOCKS(cc.br, cc)
	rec.Host, rec.Port = clip(host), port
	if err != nil {
		rec.Reason = err.Error()
		var se *socksError
		if errors.As(err, &se) {
			socksReply(cc, se.code)
		}
		return
	}
	cc.lift()
	d := g.cfg.Policy.Check(g.ctx, host, port)
	rec.Host, rec.Rule = clip(d.Host), d.Rule
	if !d.Allowed {
		rec.Reason = deniedValue(d)
		socksReply(cc, repNotAllowed)
		return
	}
	if ic := g.cfg.Intercept; ic != nil && ic.Binds(d.Host, port) {
		socksReply(cc, repSucceeded)
		g.intercept(rec, d, func(dial Dialer) string {
			return ic.ServeTunnel(g.ctx, cc, cc.br, d.Host, port, dial)
		})
		return
	}
	up, addr, err := g.dial(d)
	if err != nil {
		rec.Reason = err.Error()
		socksReply(cc, repRefused)
		return
	}
	defer g.untrack(up)
	defer up.Close()
	rec.Addr = addr.String()
	socksReply(cc, repSucceeded)
	g.socksRelay(cc, up, d, rec)
}

// socksRelay relays a SOCKS5 stream. Plain TCP passes as is; a stream to
// a name that starts with a TLS ClientHello must name that host, as for
// CONNECT (no domain fronting through SOCKS5).
func (g *Gateway) socksRelay(cc *clientConn, up net.Conn, d Decision, rec *Record) {
	_ = cc.SetReadDeadline(time.Time{})
	rec.Allowed = true
	var gate func() bool
	if _, err := netip.ParseAddr(d.Host); err != nil {
		gate = func() bool { return g.socksGate(cc, up, d, rec) }
	}
	u, dn := relay(cc, cc.br, up, gate)
	rec.BytesUp += u
	rec.BytesDown += dn
}

// socksGate waits for the sandbox's first byte (no deadline: the server
// may speak first) and, when it starts a TLS ClientHello, checks its
// server name and sends it on.
func (g *Gateway) socksGate(cc *clientConn, up net.Conn, d Decision, rec *Record) bool {
	first, err := cc.br.Peek(1)
	if err != nil || first[0] != 0x16 {
		return true
	}
	_ = cc.SetReadDeadline(time.Now().Add(g.cfg.HeaderTimeout))
	hello, sni, herr := readClientHello(cc.br)
	_ = cc.SetReadDeadline(time.Time{})
	if herr == nil && sni != "" && sni != d.Host {
		rec.Allowed, rec.Rule = false, ""
		rec.Reason = fmt.Sprintf("tunnel to %s refused: the TLS server name %q differs (no domain fronting)",
			net.JoinHostPort(d.Host, strconv.Itoa(d.Port)), clip(sni))
		return false
	}
	n, werr := up.Write(hello)
	rec.BytesUp += int64(n)
	return werr == nil
}
