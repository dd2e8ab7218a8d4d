package forward_test

import (
	"bufio"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/forward"
	"github.com/credbroker/credbroker/agentenv/forward/forwardtest"
)

// startForwarder serves a forwarder on free loopback ports in front of
// sock until the test ends.
func startForwarder(t testing.TB, sock string) *forward.Forwarder {
	t.Helper()
	f, err := forward.Listen(forward.Config{Socket: sock, HTTPAddr: "127.0.0.1:0", SOCKSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return f
}

// TestForwarderCurl: the real curl, told to use the forwarder's ports,
// reaches a local HTTP server, an HTTPS server (through CONNECT: curl
// checks the server's own certificate, so TLS passed through untouched)
// and, over SOCKS5, a plain HTTP server, and each request went through the
// gateway.
func TestForwarderCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl is needed (Debian package curl): %v", err)
	}
	gw := forwardtest.Start(t)
	f := startForwarder(t, gw.Socket)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "plain %s %s %d", r.Method, r.URL.Path, len(body))
	}))
	defer plain.Close()
	secure := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "secure %s", r.URL.Path)
	}))
	defer secure.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: secure.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	big := strings.Repeat("x", 3<<20)
	for _, tc := range []struct {
		name string
		args []string
		want string
		dst  string
	}{
		{"http", []string{"--proxy", "http://" + f.HTTPAddr(), plain.URL + "/a"}, "plain GET /a 0", plain.Listener.Addr().String()},
		{"http post 3MB", []string{"--proxy", "http://" + f.HTTPAddr(), "--data-binary", "@-", plain.URL + "/up"}, "plain POST /up 3145728", plain.Listener.Addr().String()},
		{"https connect", []string{"--proxy", "http://" + f.HTTPAddr(), "--cacert", ca, secure.URL + "/b"}, "secure /b", secure.Listener.Addr().String()},
		{"socks5h", []string{"--proxy", "socks5h://" + f.SOCKSAddr(), plain.URL + "/c"}, "plain GET /c 0", plain.Listener.Addr().String()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(gw.Seen())
			cmd := exec.Command(curl, append([]string{"-sS", "--max-time", "20"}, tc.args...)...)
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no NO_PROXY, no other proxy
			if strings.Contains(tc.name, "post") {
				cmd.Stdin = strings.NewReader(big)
			}
			out, err := cmd.CombinedOutput()
			if err != nil || string(out) != tc.want {
				t.Fatalf("curl %q: %v: got %q, want %q", tc.args, err, out, tc.want)
			}
			if seen := gw.Seen()[before:]; !slices.Contains(seen, tc.dst) {
				t.Errorf("the gateway saw %q, want %s among them", seen, tc.dst)
			}
		})
	}
}

// TestForwarderHalfClose: a client that sends its request and shuts its
// write side still gets the reply, which needs the EOF passed on through
// both relays (forwarder and gateway) to a server that answers only after
// reading to EOF.
func TestForwarderHalfClose(t *testing.T) {
	gw := forwardtest.Start(t)
	f := startForwarder(t, gw.Socket)
	echo := counter(t)
	c, err := net.Dial("tcp", f.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\n\r\n", echo)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	payload := strings.Repeat("half-close ", 100000)
	if _, err := io.WriteString(c, payload); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(br)
	if err != nil || string(got) != fmt.Sprint(len(payload)) {
		t.Fatalf("reply %q, %v; want %d (the server saw EOF only if CloseWrite was passed on)", got, err, len(payload))
	}
}

// counter serves on loopback: read to EOF, then write the byte count and
// close.
func counter(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				fmt.Fprint(c, n)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestForwarderBusyPort: when the default port is taken, Listen picks a
// free one on the same host and reports it.
func TestForwarderBusyPort(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	f, err := forward.Listen(forward.Config{Socket: "/nonexistent", HTTPAddr: taken.Addr().String(), SOCKSAddr: taken.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, a := range []string{f.HTTPAddr(), f.SOCKSAddr()} {
		host, _, _ := net.SplitHostPort(a)
		if a == taken.Addr().String() || host != "127.0.0.1" {
			t.Errorf("listening on %s, want another port on 127.0.0.1 than %s", a, taken.Addr())
		}
	}
	if f.HTTPAddr() == f.SOCKSAddr() {
		t.Errorf("both ports are %s", f.HTTPAddr())
	}
}

// TestForwarderGatewayGone: with no gateway behind the socket (the
// session ended), a client's connection is closed, not held open.
func TestForwarderGatewayGone(t *testing.T) {
	f := startForwarder(t, filepath.Join(t.TempDir(), "gone.sock"))
	c, err := net.Dial("tcp", f.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET http://example.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n")
	// Closed either way: a FIN (EOF), or a reset when the forwarder closed
	// before reading the request still in its receive buffer.
	if b, err := io.ReadAll(c); (err != nil && !errors.Is(err, syscall.ECONNRESET)) || len(b) != 0 {
		t.Errorf("read %q, %v; want the connection closed with nothing", b, err)
	}
}

// TestForwarderServeEndsTunnels: cancelling Serve closes open tunnels and
// returns only once their goroutines are gone.
func TestForwarderServeEndsTunnels(t *testing.T) {
	gw := forwardtest.Start(t)
	f, err := forward.Listen(forward.Config{Socket: gw.Socket, HTTPAddr: "127.0.0.1:0", SOCKSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx) }()
	c, err := net.Dial("tcp", f.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\n\r\n", counter(t))
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return with a tunnel open")
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF && !isReset(err) {
		t.Errorf("tunnel read after Serve ended: %v, want EOF", err)
	}
	if _, err := net.DialTimeout("tcp", f.HTTPAddr(), time.Second); err == nil {
		t.Errorf("still listening after Serve ended")
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}
