package proxy

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// upstreamCA is a test CA for the "real" servers behind the proxy.
type upstreamCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newUpstreamCA(t testing.TB) *upstreamCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "upstream test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &upstreamCA{cert: c, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// server starts an HTTPS server on loopback with a certificate for host.
func (u *upstreamCA) server(t testing.TB, host string, h http.Handler) *httptest.Server {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, u.cert, &key.PublicKey, u.key)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// testConfig has a Vault provider at vault.test:8200 and a kube provider
// is left out (it needs a kubeconfig file).
func testConfig(t testing.TB) *configs.Config {
	t.Helper()
	return &configs.Config{Providers: configs.Providers{Vault: &configs.VaultProvider{Address: "https://vault.test:8200"}}}
}

func testRole() configs.Role {
	return configs.Role{
		Name:     "proxied",
		Delivery: configs.DeliveryProxy,
		Vault:    &configs.VaultRole{Policies: []string{"p"}},
		Egress:   &configs.Egress{Allow: []string{"api.test:443", "other.test:443"}},
		Inject: []configs.Inject{
			{Env: "API_KEY", Path: "secret/data/api", Field: "key", Hosts: []string{"api.test:443"}, Header: "x-api-key: {}"},
		},
	}
}

// leaks records the leaks a Delivery reports.
type leaks struct {
	mu sync.Mutex
	l  []Leak
}

func (l *leaks) add(x Leak) { l.mu.Lock(); l.l = append(l.l, x); l.mu.Unlock() }
func (l *leaks) all() []Leak {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Leak(nil), l.l...)
}

// wait returns the reports once there are n (a leak is reported after
// its refusal is answered, so a client may read the 403 first), or what
// there is after 5 s.
func (l *leaks) wait(n int) []Leak {
	deadline := time.Now().Add(5 * time.Second)
	for {
		ls := l.all()
		if len(ls) >= n || time.Now().After(deadline) {
			return ls
		}
		time.Sleep(time.Millisecond)
	}
}

// openTest opens a session with a vault token and an inject value; the
// upstream CA is trusted for vault.
func openTest(t *testing.T, up *upstreamCA, lk *leaks) (*Session, providers.Grant) {
	t.Helper()
	return openTestWith(t, up, lk.add)
}

// openTestWith is openTest with its own leak callback.
func openTestWith(t *testing.T, up *upstreamCA, onLeak func(Leak)) (*Session, providers.Grant) {
	t.Helper()
	d, err := New(Options{Config: testConfig(t), RootsPEM: up.pem, OnLeak: onLeak})
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Open("s-test", testRole(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	real := providers.Grant{
		Files:      map[string]secret.Value{"vault/token": secret.New(realVaultToken)},
		Env:        map[string]secret.Value{"VAULT_TOKEN": secret.New(realVaultToken), "API_KEY": secret.New(realAPIKey)},
		UpstreamCA: up.pem,
		Secrets: []providers.IssuedSecret{
			{Value: secret.New(realVaultToken), What: "vault token", Name: providers.SecretVaultToken},
			{Value: secret.New(realAPIKey), What: "inject API_KEY", Name: providers.SecretInjectPrefix + "API_KEY"},
		},
	}
	g, err := s.Deliver("vault", real)
	if err != nil {
		t.Fatal(err)
	}
	return s, g
}

const (
	realVaultToken = "hvs.REALREALREALREALREALREALREALREAL0123"
	realAPIKey     = "sk-real-api-key-0123456789abcdef"
)

// tunnel serves one ServeTunnel for host:port whose upstream is srv,
// and returns an HTTP client that talks through it as a sandbox would.
func tunnel(t *testing.T, s *Session, host string, port int, srv *httptest.Server) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.certPEM)
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host},
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			client, gw := net.Pipe()
			go s.ServeTunnel(context.Background(), gw, bufio.NewReader(gw), host, port, func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
			})
			return client, nil
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}
