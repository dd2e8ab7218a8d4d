package forward_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/forward/forwardtest"
)

// BenchmarkForwarder measures what the forwarder adds on loopback, each
// case side by side with the same path minus the forwarder (client →
// stand-in gateway socket directly):
//   - connect: open a CONNECT tunnel to a loopback server and read its
//     first byte (the time a client waits before its TLS handshake can
//     start);
//   - throughput: 64 MiB from a loopback server through an open tunnel.
//
// Run: go test -run '^$' -bench BenchmarkForwarder ./agentenv/forward/
func BenchmarkForwarder(b *testing.B) {
	gw := forwardtest.Start(b)
	f := startForwarder(b, gw.Socket)
	greeter := serveLoop(b, func(c net.Conn) { c.Write([]byte{'!'}) })
	const size = 64 << 20
	source := serveLoop(b, func(c net.Conn) {
		buf := make([]byte, 256<<10)
		for n := 0; n < size; n += len(buf) {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	paths := []struct {
		name string
		dial func() (net.Conn, error)
	}{
		{"direct-gateway", func() (net.Conn, error) { return net.Dial("unix", gw.Socket) }},
		{"via-forwarder", func() (net.Conn, error) { return net.Dial("tcp", f.HTTPAddr()) }},
	}
	for _, p := range paths {
		b.Run("connect/"+p.name, func(b *testing.B) {
			for b.Loop() {
				c, br := tunnel(b, p.dial, greeter)
				if _, err := br.ReadByte(); err != nil {
					b.Fatal(err)
				}
				c.Close()
			}
		})
	}
	for _, p := range paths {
		b.Run("throughput/"+p.name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				c, br := tunnel(b, p.dial, source)
				n, err := io.Copy(io.Discard, br)
				c.Close()
				if err != nil || n != size {
					b.Fatalf("read %d bytes, %v; want %d", n, err, size)
				}
			}
		})
	}
}

// tunnel opens a CONNECT tunnel to dst over dial.
func tunnel(b *testing.B, dial func() (net.Conn, error), dst string) (net.Conn, *bufio.Reader) {
	c, err := dial()
	if err != nil {
		b.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", dst)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		b.Fatalf("CONNECT %s: %v %v", dst, resp, err)
	}
	return c, br
}

// serveLoop serves handle on a loopback port until the benchmark ends.
func serveLoop(b *testing.B, handle func(net.Conn)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}
