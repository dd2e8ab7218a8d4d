package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker/egress"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// benchGateways serves one session's egress gateway twice over the same
// upstream: as file delivery has it (a plain tunnel) and as proxy
// delivery has it (TLS terminated, the inject value swapped in, the
// answer redacted). It returns an HTTPS client for each, talking to
// https://api.test:<port> through its gateway socket as a sandbox does.
func benchGateways(b *testing.B, h http.Handler) (files, proxied *http.Client, base string) {
	b.Helper()
	up := newUpstreamCA(b)
	srv := up.server(b, "api.test", h)
	b.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	host := "api.test:" + strconv.Itoa(port)
	role := configs.Role{Name: "r", Delivery: configs.DeliveryProxy, Vault: &configs.VaultRole{Policies: []string{"p"}},
		Egress: &configs.Egress{Allow: []string{host}},
		Inject: []configs.Inject{{Env: "API_KEY", Path: "secret/data/api", Field: "key", Hosts: []string{host}, Header: "x-api-key: {}"}}}
	cfg := &configs.Config{
		Broker:    configs.Broker{Egress: configs.BrokerEgress{Hosts: map[string]string{"api.test": "127.0.0.1"}}},
		Providers: configs.Providers{Vault: &configs.VaultProvider{Address: "https://vault.test:8200"}},
		Roles:     map[string]configs.Role{"r": role},
	}
	d, err := New(Options{Config: cfg, RootsPEM: up.pem})
	if err != nil {
		b.Fatal(err)
	}
	s, err := d.Open("s-bench", role, time.Now().Add(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	if _, err := s.Deliver("vault", providers.Grant{Secrets: []providers.IssuedSecret{
		{Value: secret.New(realAPIKey), What: "inject API_KEY", Name: providers.SecretInjectPrefix + "API_KEY"}}}); err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cbp")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	client := func(name string, ic egress.Interceptor, roots []byte) *http.Client {
		res := &egress.Resolver{Hosts: cfg.EgressHosts(), Lookup: func(context.Context, string) ([]netip.Addr, error) {
			b.Fatal("DNS lookup in a loopback benchmark")
			return nil, nil
		}}
		p, err := egress.NewPolicy(cfg, "r", res)
		if err != nil {
			b.Fatal(err)
		}
		sock := filepath.Join(dir, name+".sock")
		g, err := egress.Listen(sock, egress.Config{Session: "s-bench", Role: "r", UID: os.Geteuid(), Policy: p, Intercept: ic})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { g.Close() })
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(roots)
		tr := &http.Transport{
			Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: "gateway"}),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "unix", sock)
			},
			TLSClientConfig: &tls.Config{RootCAs: pool},
		}
		b.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr}
	}
	return client("files", nil, up.pem), client("proxy", s, s.ca.certPEM), "https://" + host
}

// BenchmarkProxyRequest is one small HTTPS request on a kept-alive
// connection through the session's gateway, with file delivery (the
// gateway relays the TLS stream) and with proxy delivery (the gateway
// terminates TLS, swaps the inject value in and redacts the answer). The
// difference is the latency proxy delivery adds per request.
func BenchmarkProxyRequest(b *testing.B) {
	files, proxied, base := benchGateways(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"ok":true}`)
	}))
	for name, c := range map[string]*http.Client{"files": files, "proxy": proxied} {
		b.Run(name, func(b *testing.B) {
			get(b, c, base+"/v1/ping") // connect outside the loop: requests on a kept-alive connection
			for b.Loop() {
				get(b, c, base+"/v1/ping")
			}
		})
	}
}

// BenchmarkProxyThroughput moves 200 MB down (GET) and up (PUT) through
// the gateway with each delivery; MB/s compares them.
func BenchmarkProxyThroughput(b *testing.B) {
	const size = 200 << 20
	payload := bytes.Repeat([]byte("credbroker-proxy-throughput "), size/28+1)[:size]
	files, proxied, base := benchGateways(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			n, _ := io.Copy(io.Discard, r.Body)
			io.WriteString(w, strconv.FormatInt(n, 10))
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(size))
		w.Write(payload)
	}))
	for name, c := range map[string]*http.Client{"files": files, "proxy": proxied} {
		b.Run("get/"+name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				if n := get(b, c, base+"/big"); n != size {
					b.Fatalf("got %d bytes", n)
				}
			}
		})
		b.Run("put/"+name, func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				req, _ := http.NewRequest(http.MethodPut, base+"/big", bytes.NewReader(payload))
				resp, err := c.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				got, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(got) != strconv.Itoa(size) {
					b.Fatalf("server got %s bytes", got)
				}
			}
		})
	}
}

// get fetches u and returns the body's length.
func get(b *testing.B, c *http.Client, u string) int64 {
	resp, err := c.Get(u)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("status %d", resp.StatusCode)
	}
	return n
}
