package egress

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzReadProxyRequest feeds the HTTP/CONNECT request reader arbitrary
// bytes: it must return (never panic or loop), and what it accepts must
// name a port in range and a host without control characters.
func FuzzReadProxyRequest(f *testing.F) {
	for _, s := range []string{
		"GET http://web.test/x?y=1 HTTP/1.1\r\nHost: web.test\r\n\r\n",
		"CONNECT web.test:443 HTTP/1.1\r\nHost: web.test:443\r\n\r\n",
		"CONNECT [::1]:22 HTTP/1.1\r\n\r\n",
		"POST http://a.test:8080/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
		"GET /relative HTTP/1.1\r\n\r\n",
		"CONNECT web.test HTTP/1.1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cc := newClientConn(nil)
		cc.lr.R = bytes.NewReader(data)
		pr, err := readProxyRequest(cc.br)
		if err != nil {
			checkResponse(t, 400, "", err.Error())
			return
		}
		if pr.port < 1 || pr.port > 65535 || pr.host == "" {
			t.Fatalf("accepted %q with host %q port %d", data, pr.host, pr.port)
		}
		checkResponse(t, 403, "no rule allows "+pr.host, "credbroker egress: no rule allows "+pr.host)
	})
}

// checkResponse writes an answer as the gateway does and parses it back:
// nothing the sandbox sent may split it or add a header.
func checkResponse(t *testing.T, code int, denied, body string) {
	var buf bytes.Buffer
	writeStatus(&buf, code, denied, body)
	resp, err := http.ReadResponse(bufio.NewReader(&buf), nil)
	if err != nil {
		t.Fatalf("the answer does not parse: %v\n%q", err, buf.String())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code || len(resp.Header) > 4 || buf.Len() != 0 || !bytes.HasSuffix(b, []byte("\n")) {
		t.Fatalf("answer %d with %d headers, %d bytes left: %q", resp.StatusCode, len(resp.Header), buf.Len(), b)
	}
}

// FuzzReadSOCKS feeds the SOCKS5 greeting and request parser arbitrary
// bytes: it must return, and accept only CONNECT with a port.
func FuzzReadSOCKS(f *testing.F) {
	f.Add([]byte{5, 1, 0, 5, 1, 0, 3, 8, 'g', 'i', 't', '.', 't', 'e', 's', 't', 0, 22})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, 1, 187})
	f.Add([]byte{5, 1, 0, 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 80})
	f.Add([]byte{5, 2, 1, 2})
	f.Add([]byte{5, 1, 0, 5, 2, 0, 1, 1, 2, 3, 4, 0, 1})
	f.Fuzz(func(t *testing.T, data []byte) {
		host, port, err := readSOCKS(bufio.NewReader(bytes.NewReader(data)), io.Discard)
		if err != nil {
			return
		}
		if port < 0 || port > 65535 || len(host) > 255 {
			t.Fatalf("accepted %q: host %q port %d", data, host, port)
		}
	})
}

// FuzzClientHello feeds the TLS ClientHello reader arbitrary records: it
// must return, never read past maxHelloBytes, and return a server name
// only without control characters.
func FuzzClientHello(f *testing.F) {
	f.Add(clientHelloBytes(f, "web.test"))
	f.Add(clientHelloBytes(f, ""))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, sni, err := readClientHello(bytes.NewReader(data))
		if len(raw) > maxHelloBytes+5 {
			t.Fatalf("read %d bytes", len(raw))
		}
		if err == nil && strings.ContainsFunc(sni, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			t.Fatalf("server name %q", sni)
		}
	})
}
