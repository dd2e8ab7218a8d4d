package egress

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// maxHeaderBytes bounds a request line and headers (or a SOCKS5 request).
const maxHeaderBytes = 32 << 10

// halfCloseGrace is how long the sandbox may keep sending once the server
// closed its side.
const halfCloseGrace = 30 * time.Second

// clientConn is an accepted connection with its buffered reader. Reads
// are limited to maxHeaderBytes until lift is called.
type clientConn struct {
	net.Conn
	lr *io.LimitedReader
	br *bufio.Reader
}

func newClientConn(c net.Conn) *clientConn {
	lr := &io.LimitedReader{R: c, N: maxHeaderBytes}
	return &clientConn{Conn: c, lr: lr, br: bufio.NewReaderSize(lr, 4096)}
}

// lift ends the header limit: the rest is the stream to relay.
func (c *clientConn) lift() { c.lr.N = math.MaxInt64 }

// serveConn handles one connection from the sandbox and reports it.
func (g *Gateway) serveConn(c net.Conn) {
	start := time.Now()
	var rec Record
	defer func() { g.finish(rec, start) }()
	if uid, err := peerUID(c); err != nil || (uid != g.cfg.UID && uid != 0) {
		rec.Reason = fmt.Sprintf("peer uid %d is not the session's (%v)", uid, err)
		return
	}
	_ = c.SetReadDeadline(start.Add(g.cfg.HeaderTimeout))
	cc := newClientConn(c)
	first, err := cc.br.Peek(1)
	if err != nil {
		rec.Reason = "no request: " + shortErr(err)
		return
	}
	if first[0] == socksVersion {
		rec.Proto = "socks5"
		g.serveSOCKS(cc, &rec)
		return
	}
	g.serveHTTP(cc, &rec)
}

// peerUID reads the connecting process's uid with SO_PEERCRED.
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, fmt.Errorf("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	uid, serr := -1, error(nil)
	if err := raw.Control(func(fd uintptr) {
		var cred *unix.Ucred
		if cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); serr == nil {
			uid = int(cred.Uid)
		}
	}); err != nil {
		return -1, err
	}
	return uid, serr
}

// countWriter counts the bytes written through it.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// relay copies both ways until both directions end, half-closing each
// side's write when its source is done; it returns the bytes sent up (to
// the server) and down (to the sandbox). fromClient holds the sandbox's
// buffered bytes. gate, when set, runs before anything is sent up (the
// server's bytes already flow down, for protocols where it speaks first);
// it returns false to refuse, which closes both sides.
func relay(client net.Conn, fromClient io.Reader, upstream net.Conn, gate func() bool) (up, down int64) {
	var wg sync.WaitGroup
	wg.Go(func() {
		if gate != nil && !gate() {
			_ = client.Close()
			_ = upstream.Close()
			return
		}
		up, _ = io.Copy(upstream, fromClient)
		closeWrite(upstream)
	})
	down, _ = io.Copy(client, upstream)
	closeWrite(client)
	// A sandbox that never closes its side cannot hold the handler.
	_ = client.SetReadDeadline(time.Now().Add(halfCloseGrace))
	wg.Wait()
	return up, down
}

// closeWrite half-closes c when it can, else closes it.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		return
	}
	_ = c.Close()
}

// shortErr shortens the usual read errors for records.
func shortErr(err error) string {
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return "timed out"
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return "closed early"
	}
	return err.Error()
}
