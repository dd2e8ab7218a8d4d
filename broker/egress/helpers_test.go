package egress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
)

// testEnv is a gateway on a Unix socket in a short temp dir, with a dial
// hook that fails the test for any address not in allowDial.
type testEnv struct {
	t       *testing.T
	gw      *Gateway
	sock    string
	mu      sync.Mutex
	records []Record
	dialed  []netip.AddrPort
	allowed map[netip.AddrPort]bool
}

// testConfig is a config with role r: the given rules and hosts.
func testConfig(allow, deny []string, hosts map[string]string) *configs.Config {
	return &configs.Config{
		Broker: configs.Broker{Egress: configs.BrokerEgress{Hosts: hosts}},
		Roles:  map[string]configs.Role{"r": {Name: "r", Egress: &configs.Egress{Allow: allow, Deny: deny}}},
	}
}

// shortDir is a temp dir with a path short enough for a Unix socket.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "eg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

func newTestEnv(t *testing.T, cfg *configs.Config, allowDial ...netip.AddrPort) *testEnv {
	t.Helper()
	e := &testEnv{t: t, allowed: map[netip.AddrPort]bool{}}
	for _, a := range allowDial {
		e.allowed[a] = true
	}
	p, err := NewPolicy(cfg, "r", &Resolver{Hosts: cfg.EgressHosts(), Lookup: noDNS})
	if err != nil {
		t.Fatal(err)
	}
	e.sock = filepath.Join(shortDir(t), "s.sock")
	var d net.Dialer
	e.gw, err = Listen(e.sock, Config{
		Session: "s-test", Role: "r", UID: os.Geteuid(), Policy: p,
		HeaderTimeout: 500 * time.Millisecond,
		Dial: func(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
			e.mu.Lock()
			e.dialed = append(e.dialed, a)
			ok := e.allowed[a]
			e.mu.Unlock()
			if !ok {
				t.Errorf("the gateway dialed %s, which the test does not allow", a)
				return nil, errors.New("dial refused by the test")
			}
			return d.DialContext(ctx, "tcp", a.String())
		},
		Report: func(r Record) {
			e.mu.Lock()
			e.records = append(e.records, r)
			e.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.gw.Close() })
	return e
}

// noDNS refuses every DNS lookup: tests reach servers by hosts-map names.
func noDNS(context.Context, string) ([]netip.Addr, error) {
	return nil, errors.New("no DNS in tests")
}

// dial opens a connection to the gateway socket.
func (e *testEnv) dial() net.Conn {
	e.t.Helper()
	c, err := net.Dial("unix", e.sock)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// client is a Go HTTP client whose proxy is the gateway.
func (e *testEnv) client(roots *x509.CertPool) *http.Client {
	proxy, _ := http.NewRequest("GET", "http://gateway.invalid", nil)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: http.ProxyURL(proxy.URL),
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", e.sock)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
}

// waitRecords waits until n records arrived and returns them.
func (e *testEnv) waitRecords(n int) []Record {
	e.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		e.mu.Lock()
		rs := slices.Clone(e.records)
		e.mu.Unlock()
		if len(rs) >= n || time.Now().After(deadline) {
			if len(rs) != n {
				e.t.Fatalf("got %d records, want %d: %+v", len(rs), n, rs)
			}
			return rs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *testEnv) dialCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.dialed)
}

// addrPort is the loopback address of a test server URL's listener.
func addrPort(t testing.TB, l net.Listener) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(l.Addr().String())
}

func portOf(ap netip.AddrPort) string { return strconv.Itoa(int(ap.Port())) }

// tlsServer serves h over TLS with a certificate for name, and returns
// the pool that trusts it and a PEM file of it (for curl --cacert).
func tlsServer(t testing.TB, name string, h http.Handler) (*httptest.Server, *x509.CertPool, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pemPath := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(pemPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, pool, pemPath
}

// socksDo runs a SOCKS5 CONNECT on c and returns the reply code.
func socksDo(t testing.TB, c net.Conn, atyp byte, addr []byte, port int) byte {
	t.Helper()
	if _, err := c.Write([]byte{5, 1, 0}); err != nil {
		t.Fatal(err)
	}
	var m [2]byte
	if _, err := io.ReadFull(c, m[:]); err != nil || m != [2]byte{5, 0} {
		t.Fatalf("socks greeting reply %v, %v", m, err)
	}
	req := append([]byte{5, 1, 0, atyp}, addr...)
	req = append(req, byte(port>>8), byte(port))
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	var rep [10]byte
	if _, err := io.ReadFull(c, rep[:]); err != nil {
		t.Fatalf("socks reply: %v", err)
	}
	return rep[1]
}

func (e *testEnv) recordCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.records)
}

// serveLoopback listens on a loopback port until the test ends and runs
// handle on each connection it accepts (closing the connection after).
func serveLoopback(tb testing.TB, handle func(net.Conn)) net.Listener {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); handle(c) }()
		}
	}()
	return l
}
