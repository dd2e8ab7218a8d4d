package egress

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestHTTPForwardAllowedAndDenied(t *testing.T) {
	var gotHost, gotProxyAuth, gotURI string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotHost, gotProxyAuth, gotURI = r.Host, r.Header.Get("Proxy-Authorization"), r.RequestURI
		fmt.Fprint(w, "hello from web.test")
	}))
	defer srv.Close()
	ap := addrPort(t, srv.Listener)
	e := newTestEnv(t, testConfig([]string{"web.test:" + portOf(ap)}, nil, map[string]string{"web.test": "127.0.0.1"}), ap)
	c := e.client(nil)

	req, _ := http.NewRequest("GET", "http://web.test:"+portOf(ap)+"/path?token=s3cret", nil)
	req.Header.Set("Proxy-Authorization", "Basic Zm9vOmJhcg==")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from web.test" {
		t.Fatalf("allowed request: %d %q", resp.StatusCode, body)
	}
	if gotHost != "web.test:"+portOf(ap) || gotProxyAuth != "" || gotURI != "/path?token=s3cret" {
		t.Errorf("server saw Host %q, Proxy-Authorization %q, URI %q", gotHost, gotProxyAuth, gotURI)
	}

	resp, err = c.Get("http://denied.test/x?q=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `no rule allows denied.test:80; allow with roles.r.egress.allow: "denied.test:80"`
	if resp.StatusCode != 403 || resp.Header.Get(DeniedHeader) != want || !strings.Contains(string(body), "no rule allows denied.test:80") {
		t.Errorf("denied request: %d %s=%q body %q", resp.StatusCode, DeniedHeader, resp.Header.Get(DeniedHeader), body)
	}

	// The allowed request's record is written when its forward ends,
	// which may come after the denied one's: match them by host.
	rs := e.waitRecords(2)
	if rs[0].Host != "web.test" {
		rs[0], rs[1] = rs[1], rs[0]
	}
	if !rs[0].Allowed || rs[0].Proto != "http" || rs[0].Host != "web.test" || rs[0].Addr != ap.String() || rs[0].BytesUp == 0 || rs[0].BytesDown == 0 {
		t.Errorf("allowed record: %+v", rs[0])
	}
	if rs[1].Allowed || rs[1].Host != "denied.test" || rs[1].Port != 80 || rs[1].Addr != "" {
		t.Errorf("denied record: %+v", rs[1])
	}
	for _, r := range rs {
		if s := fmt.Sprintf("%+v", r); strings.Contains(s, "s3cret") || strings.Contains(s, "/path") || strings.Contains(s, "q=1") {
			t.Errorf("a record holds the URL's path or query: %s", s)
		}
	}
	if st := e.gw.Stats(); st.Allowed != 1 || st.Denied != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestConnectTLSAllowedAndSNIMismatch(t *testing.T) {
	srv, pool, _ := tlsServer(t, "web.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "tls ok")
	}))
	ap := addrPort(t, srv.Listener)
	e := newTestEnv(t, testConfig([]string{"web.test:" + portOf(ap)}, nil, map[string]string{"web.test": "127.0.0.1"}), ap)

	hc := e.client(pool)
	resp, err := hc.Get("https://web.test:" + portOf(ap) + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	hc.CloseIdleConnections()
	e.waitRecords(1) // records come in the order connections close
	if string(body) != "tls ok" {
		t.Fatalf("https through CONNECT: %q", body)
	}

	for _, tc := range []struct{ sni, want string }{
		{"other.test", `the TLS server name "other.test" differs`},
		{"", "names no server"},
	} {
		before := e.recordCount()
		c := e.dial()
		fmt.Fprintf(c, "CONNECT web.test:%s HTTP/1.1\r\nHost: web.test:%s\r\n\r\n", portOf(ap), portOf(ap))
		br := bufio.NewReader(c)
		r, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("CONNECT: %v %v", r, err)
		}
		tc := tc
		tlsc := tls.Client(c, &tls.Config{ServerName: tc.sni, InsecureSkipVerify: tc.sni == "", RootCAs: pool})
		_ = tlsc.SetDeadline(time.Now().Add(3 * time.Second))
		if err := tlsc.Handshake(); err == nil {
			t.Errorf("TLS handshake with SNI %q through CONNECT web.test succeeded", tc.sni)
		}
		c.Close()
		e.waitRecords(before + 1)
	}
	rs := e.waitRecords(3)
	if !rs[0].Allowed || rs[0].Proto != "connect" {
		t.Errorf("record of the allowed tunnel: %+v", rs[0])
	}
	for i, want := range []string{`"other.test" differs`, "names no server"} {
		if r := rs[i+1]; r.Allowed || !strings.Contains(r.Reason, want) {
			t.Errorf("record %d: %+v, want a refusal with %q", i+1, r, want)
		}
	}
}

func TestRefusedAddressesAreNeverDialed(t *testing.T) {
	// Every public address on port 80 is allowed: the special ones still
	// are not, and the dial hook proves they are never dialed.
	e := newTestEnv(t, testConfig([]string{"public.test", "0.0.0.0/0:80", "::/0:80"}, nil, nil))
	c := e.client(nil)
	for _, u := range []string{"http://169.254.169.254/latest/meta-data/", "http://10.0.0.1/", "http://[fd00:ec2::254]/", "http://127.0.0.1:8200/"} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 || resp.Header.Get(DeniedHeader) == "" {
			t.Errorf("%s: %d %q", u, resp.StatusCode, resp.Header.Get(DeniedHeader))
		}
	}
	for _, target := range []string{"10.0.0.1:443", "169.254.169.254:443"} {
		cn := e.dial()
		fmt.Fprintf(cn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		r, err := http.ReadResponse(bufio.NewReader(cn), &http.Request{Method: "CONNECT"})
		if err != nil || r.StatusCode != 403 {
			t.Errorf("CONNECT %s: %v %v", target, r, err)
		}
	}
	for _, a := range []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("fd00:ec2::254")} {
		atyp := byte(atypIPv4)
		if a.Is6() {
			atyp = atypIPv6
		}
		if code := socksDo(t, e.dial(), atyp, a.AsSlice(), 80); code != repNotAllowed {
			t.Errorf("SOCKS5 %s: reply %d, want %d", a, code, repNotAllowed)
		}
	}
	e.waitRecords(9)
	if n := e.dialCount(); n != 0 {
		t.Errorf("%d dials", n)
	}
}

func TestSOCKS5(t *testing.T) {
	l := serveLoopback(t, func(c net.Conn) { // server speaks first, then echoes
		io.WriteString(c, "SSH-2.0-test\r\n")
		io.Copy(c, c)
	})
	ap := addrPort(t, l)
	e := newTestEnv(t, testConfig([]string{"git.test:" + portOf(ap), "127.0.0.1:" + portOf(ap)}, nil,
		map[string]string{"git.test": "127.0.0.1"}), ap)

	check := func(c net.Conn) {
		t.Helper()
		br := bufio.NewReader(c)
		line, err := br.ReadString('\n')
		if err != nil || line != "SSH-2.0-test\r\n" {
			t.Fatalf("server banner %q, %v", line, err)
		}
		io.WriteString(c, "ping\n")
		if line, _ = br.ReadString('\n'); line != "ping\n" {
			t.Errorf("echo %q", line)
		}
	}
	c := e.dial()
	if code := socksDo(t, c, atypDomain, append([]byte{8}, "git.test"...), int(ap.Port())); code != repSucceeded {
		t.Fatalf("SOCKS5 domain: reply %d", code)
	}
	check(c)
	c = e.dial()
	if code := socksDo(t, c, atypIPv4, []byte{127, 0, 0, 1}, int(ap.Port())); code != repSucceeded {
		t.Fatalf("SOCKS5 IPv4: reply %d", code)
	}
	check(c)
	if code := socksDo(t, e.dial(), atypDomain, append([]byte{8}, "git.test"...), 22); code != repNotAllowed {
		t.Errorf("SOCKS5 to a port no rule allows: reply %d", code)
	}
	if code := socksDo(t, e.dial(), atypIPv6, netip.MustParseAddr("::1").AsSlice(), int(ap.Port())); code != repNotAllowed {
		t.Errorf("SOCKS5 IPv6 ::1: reply %d", code)
	}
	// BIND is not supported.
	b := e.dial()
	b.Write([]byte{5, 1, 0})
	io.ReadFull(b, make([]byte, 2))
	b.Write([]byte{5, 2, 0, 1, 127, 0, 0, 1, 0, 22})
	rep := make([]byte, 10)
	if _, err := io.ReadFull(b, rep); err != nil || rep[1] != repCmdUnsupp {
		t.Errorf("SOCKS5 BIND: reply %v, %v", rep, err)
	}
}

func TestSOCKS5RefusesFrontedTLS(t *testing.T) {
	srv, pool, _ := tlsServer(t, "web.test", http.NotFoundHandler())
	ap := addrPort(t, srv.Listener)
	e := newTestEnv(t, testConfig([]string{"web.test:" + portOf(ap)}, nil, map[string]string{"web.test": "127.0.0.1"}), ap)
	c := e.dial()
	if code := socksDo(t, c, atypDomain, append([]byte{8}, "web.test"...), int(ap.Port())); code != repSucceeded {
		t.Fatalf("reply %d", code)
	}
	tlsc := tls.Client(c, &tls.Config{ServerName: "front.test", RootCAs: pool})
	_ = tlsc.SetDeadline(time.Now().Add(3 * time.Second))
	if err := tlsc.Handshake(); err == nil {
		t.Errorf("TLS with SNI front.test through SOCKS5 to web.test succeeded")
	}
	if r := e.waitRecords(1)[0]; r.Allowed || !strings.Contains(r.Reason, `"front.test" differs`) {
		t.Errorf("record %+v", r)
	}
}

func TestMalformedAndHalfOpenNeverBlock(t *testing.T) {
	e := newTestEnv(t, testConfig([]string{"web.test"}, nil, nil))
	inputs := []string{
		"", // half-open: sends nothing
		"GET http://web.test/ HTTP/1.1\r\nHost: web.test\r\n", // headers never end
		"\x05",                         // SOCKS greeting cut short
		"\x05\x01\x00\x05\x01\x00\x03", // SOCKS request cut short
		"garbage\r\n\r\n",
		"GET /relative HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT web.test HTTP/1.1\r\n\r\n",
		"GET http://web.test/ HTTP/1.1\r\nX: " + strings.Repeat("a", 64<<10) + "\r\n\r\n",
		"\x16\x03\x01\x00\x05hello",
	}
	start := time.Now()
	done := make(chan string, len(inputs))
	for _, in := range inputs {
		go func() {
			c, err := net.Dial("unix", e.sock)
			if err != nil {
				done <- err.Error()
				return
			}
			defer c.Close()
			c.Write([]byte(in))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.ReadAll(c)
			if err != nil && !errors.Is(err, syscall.ECONNRESET) {
				done <- fmt.Sprintf("%q: not closed by the gateway: %v", clip(in), err)
				return
			}
			done <- ""
		}()
	}
	for range inputs {
		if msg := <-done; msg != "" {
			t.Error(msg)
		}
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("malformed requests took %v to be closed (header timeout 500ms)", el)
	}
	e.waitRecords(len(inputs))
	for i := 0; i < 100 && e.gw.Stats().Open != 0; i++ {
		time.Sleep(5 * time.Millisecond)
	}
	if e.gw.Stats().Open != 0 || e.dialCount() != 0 {
		t.Errorf("stats %+v, dials %d", e.gw.Stats(), e.dialCount())
	}
}

func TestCloseCutsOpenTunnelAtOnce(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 32<<10)
		for { // a download that never ends
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
	ap := addrPort(t, l)
	e := newTestEnv(t, testConfig([]string{"127.0.0.1:" + portOf(ap)}, nil, nil), ap)
	c := e.dial()
	if code := socksDo(t, c, atypIPv4, []byte{127, 0, 0, 1}, int(ap.Port())); code != repSucceeded {
		t.Fatalf("reply %d", code)
	}
	got := make(chan time.Time, 1)
	go func() {
		io.Copy(io.Discard, c)
		got <- time.Now()
	}()
	time.Sleep(50 * time.Millisecond) // the download is flowing
	start := time.Now()
	if err := e.gw.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case end := <-got:
		el := end.Sub(start)
		t.Logf("open tunnel closed %v after Close", el)
		if el > closeBound {
			t.Errorf("the tunnel closed %v after Close, want < %v", el, closeBound)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the tunnel is still open 2s after Close")
	}
	if _, err := os.Stat(e.sock); !os.IsNotExist(err) {
		t.Errorf("socket still there after Close: %v", err)
	}
	if r := e.waitRecords(1)[0]; !r.Allowed || r.BytesDown == 0 {
		t.Errorf("record %+v", r)
	}
}

// closeBound is how soon an open tunnel must be cut, loosely: the figure
// itself (around a millisecond here, 12 to 43 ms from inside a sandbox) is
// logged and goes to the docs; the bound only catches a tunnel left open
// on a loaded CI machine.
const closeBound = time.Second
