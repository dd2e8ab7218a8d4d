// Package forwardtest runs a stand-in for the daemon's egress gateway in
// tests of the sandbox side: a real HTTP forward proxy (absolute-URI
// requests and CONNECT) and SOCKS5 CONNECT server on a Unix socket, which
// tells the protocols apart by the first byte as the gateway does. It
// allows every destination and records the ones asked for, so a test can
// prove a connection went through it. It is not the gateway: no policy,
// no audit.
package forwardtest

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// Gateway is a running stand-in gateway.
type Gateway struct {
	// Socket is the Unix socket it serves (mode 0666, so a sandbox's
	// non-root uid can connect).
	Socket string
	ln     net.Listener
	tr     *http.Transport

	mu    sync.Mutex
	seen  []string
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// Start serves a gateway on a socket in a new temporary dir (mode 0711)
// until the test ends.
func Start(t testing.TB) *Gateway {
	t.Helper()
	dir, err := os.MkdirTemp("", "fwdgw-") // short: socket paths are limited to 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	g := &Gateway{Socket: filepath.Join(dir, "gw.sock"), tr: &http.Transport{}, conns: map[net.Conn]struct{}{}}
	if g.ln, err = net.Listen("unix", g.Socket); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(g.Socket, 0o666); err != nil {
		t.Fatal(err)
	}
	g.wg.Add(1)
	go g.accept()
	t.Cleanup(g.Close)
	return g
}

// Close stops the gateway and closes every open connection.
func (g *Gateway) Close() {
	g.ln.Close()
	g.mu.Lock()
	for c := range g.conns {
		c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	g.tr.CloseIdleConnections()
}

// Seen returns the destinations asked for so far ("host:port"), in order.
func (g *Gateway) Seen() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.seen...)
}

func (g *Gateway) record(dst string) {
	g.mu.Lock()
	g.seen = append(g.seen, dst)
	g.mu.Unlock()
}

func (g *Gateway) accept() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		g.conns[c] = struct{}{}
		g.mu.Unlock()
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer func() {
				g.mu.Lock()
				delete(g.conns, c)
				g.mu.Unlock()
				c.Close()
			}()
			br := bufio.NewReader(c)
			b, err := br.Peek(1)
			if err != nil {
				return
			}
			bc := &bufConn{UnixConn: c.(*net.UnixConn), r: br}
			if b[0] == 0x05 {
				g.socks(bc)
			} else {
				g.http(bc)
			}
		}()
	}
}

// bufConn reads through the bufio.Reader that peeked, and keeps the Unix
// connection's CloseWrite.
type bufConn struct {
	*net.UnixConn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (g *Gateway) http(c *bufConn) {
	for {
		req, err := http.ReadRequest(c.r)
		if err != nil {
			return
		}
		if req.Method == http.MethodConnect {
			g.record(req.Host)
			up, err := net.Dial("tcp", req.Host)
			if err != nil {
				_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
				return
			}
			defer up.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n")
			relay(c, up.(*net.TCPConn))
			return
		}
		g.record(req.URL.Host)
		req.RequestURI = ""
		resp, err := g.tr.RoundTrip(req)
		if err != nil {
			_, _ = io.WriteString(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
			return
		}
		err = resp.Write(c)
		resp.Body.Close()
		if err != nil || req.Close {
			return
		}
	}
}

// socks serves one SOCKS5 CONNECT, no authentication.
func (g *Gateway) socks(c *bufConn) {
	hdr := make([]byte, 2)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return
	}
	if _, err := io.ReadFull(c, make([]byte, hdr[1])); err != nil {
		return
	}
	_, _ = c.Write([]byte{5, 0})
	req := make([]byte, 4)
	if _, err := io.ReadFull(c, req); err != nil || req[1] != 1 {
		return
	}
	var host string
	switch req[3] {
	case 1:
		ip := make([]byte, 4)
		_, _ = io.ReadFull(c, ip)
		host = net.IP(ip).String()
	case 3:
		n := make([]byte, 1)
		_, _ = io.ReadFull(c, n)
		name := make([]byte, n[0])
		_, _ = io.ReadFull(c, name)
		host = string(name)
	case 4:
		ip := make([]byte, 16)
		_, _ = io.ReadFull(c, ip)
		host = net.IP(ip).String()
	default:
		return
	}
	pb := make([]byte, 2)
	if _, err := io.ReadFull(c, pb); err != nil {
		return
	}
	dst := net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(pb))))
	g.record(dst)
	up, err := net.Dial("tcp", dst)
	if err != nil {
		_, _ = c.Write([]byte{5, 5, 0, 1, 0, 0, 0, 0, 0, 0})
		return
	}
	defer up.Close()
	_, _ = c.Write([]byte{5, 0, 0, 1, 0, 0, 0, 0, 0, 0})
	relay(c, up.(*net.TCPConn))
}

// relay copies both ways with half-close, like the gateway.
func relay(c *bufConn, up *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		_ = up.CloseWrite()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	_ = c.CloseWrite()
	<-done
}
