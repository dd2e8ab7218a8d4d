package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// TestTunnelVaultSwap: a request with the placeholder token reaches the
// bound server with the real one, and the real token the server echoes
// comes back as the placeholder.
func TestTunnelVaultSwap(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	s, g := openTest(t, up, &lk)
	ph := g.Env["VAULT_TOKEN"].Reveal()
	if ph == realVaultToken || !strings.HasPrefix(ph, "hvs.") || len(ph) != len(realVaultToken) {
		t.Fatalf("placeholder shape: prefix hvs. and length %d wanted, got length %d", len(realVaultToken), len(ph))
	}
	if got := g.Files["vault/token"].Reveal(); got != ph {
		t.Fatal("vault/token does not hold the placeholder")
	}
	srv := up.server(t, "vault.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Vault-Token") != realVaultToken {
			http.Error(w, "bad token", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, `{"data":{"id":"`+realVaultToken+`","policies":["p"]}}`)
	}))
	c := tunnel(t, s, "vault.test", 8200, srv)
	req, _ := http.NewRequest(http.MethodGet, "https://vault.test:8200/v1/auth/token/lookup-self", nil)
	req.Header.Set("X-Vault-Token", ph)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if strings.Contains(string(body), realVaultToken) || !strings.Contains(string(body), ph) {
		t.Fatal("the answer was not redacted to the placeholder")
	}
	if len(lk.all()) != 0 {
		t.Fatalf("unexpected leak reports: %v", lk.all())
	}
}

// TestTunnelInjectAndLeak: the inject value goes on requests to its host;
// the vault placeholder sent to that host is refused and reported.
func TestTunnelInjectAndLeak(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	s, g := openTest(t, up, &lk)
	keyPH := g.Env["API_KEY"].Reveal()
	if !strings.HasPrefix(keyPH, InjectPrefix) || strings.Contains(keyPH, realAPIKey) {
		t.Fatal("inject placeholder shape")
	}
	var mu sync.Mutex
	var seenList []string
	seen := func() []string { mu.Lock(); defer mu.Unlock(); return append([]string(nil), seenList...) }
	srv := up.server(t, "api.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seenList = append(seenList, r.Header.Get("x-api-key"))
		mu.Unlock()
		_, _ = io.WriteString(w, "ok")
	}))
	c := tunnel(t, s, "api.test", 443, srv)
	for _, sent := range []string{keyPH, ""} { // swapped, and added when absent
		req, _ := http.NewRequest(http.MethodGet, "https://api.test/v1/models", nil)
		if sent != "" {
			req.Header.Set("x-api-key", sent)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if got := seen(); len(got) != 2 || got[0] != realAPIKey || got[1] != realAPIKey {
		t.Fatalf("the server did not get the real key on both requests (%d requests)", len(seen()))
	}
	// The vault placeholder, to a host it is not bound to: refused.
	req, _ := http.NewRequest(http.MethodPost, "https://api.test/v1/upload", strings.NewReader("token="+g.Env["VAULT_TOKEN"].Reveal()))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get(DeniedHeader) == "" {
		t.Fatalf("leak not refused: status %d", resp.StatusCode)
	}
	if strings.Contains(string(body), g.Env["VAULT_TOKEN"].Reveal()) || strings.Contains(string(body), realVaultToken) {
		t.Fatal("the refusal quotes a secret")
	}
	if len(seen()) != 2 {
		t.Fatal("the refused request reached the server")
	}
	ls := lk.wait(1)
	if len(ls) != 1 || ls[0].Host != "api.test" || ls[0].What != "vault token" || ls[0].Where != "body" {
		t.Fatalf("leak report: %+v", ls)
	}
}

// TestLeakAnsweredBeforeReport: the sandbox gets its whole 403 before the
// leak is reported, since reporting may end the session, which closes the
// connection at once (the callback here closes it as the gateway does).
// Reported first, the refusal raced the close and the sandbox could read
// an empty reply instead.
func TestLeakAnsweredBeforeReport(t *testing.T) {
	up := newUpstreamCA(t)
	var conns struct {
		sync.Mutex
		gw []net.Conn
	}
	var reports atomic.Int32
	s, g := openTestWith(t, up, func(Leak) {
		reports.Add(1)
		conns.Lock()
		defer conns.Unlock()
		for _, c := range conns.gw {
			c.Close()
		}
	})
	srv := up.server(t, "api.test", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.certPEM)
	c := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "api.test", MinVersion: tls.VersionTLS12},
		DialContext: func(context.Context, string, string) (net.Conn, error) {
			client, gw := net.Pipe()
			conns.Lock()
			conns.gw = append(conns.gw, gw)
			conns.Unlock()
			go s.ServeTunnel(context.Background(), gw, bufio.NewReader(gw), "api.test", 443, func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
			})
			return client, nil
		},
		// A fresh connection per request: the report below closes every
		// connection, and a request on a reused one the report closed
		// would be retried by the transport and reported twice.
		DisableKeepAlives: true,
	}}
	for i, where := range []string{"header", "query"} {
		req, _ := http.NewRequest(http.MethodGet, "https://api.test/v1/models", nil)
		if where == "header" {
			req.Header.Set("x-other", g.Env["VAULT_TOKEN"].Reveal())
		} else {
			req.URL.RawQuery = "t=" + g.Env["VAULT_TOKEN"].Reveal()
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("placeholder in the %s: %v; want a 403 read in full before the connection closed", where, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "leak attempt") {
			t.Fatalf("placeholder in the %s: status %d, body read: %v; want 403 naming the leak attempt", where, resp.StatusCode, err)
		}
		// The report (which closes every connection) comes after the
		// answer; wait for it so it cannot close the next request's.
		deadline := time.Now().Add(5 * time.Second)
		for int(reports.Load()) < i+1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if n := reports.Load(); int(n) != i+1 {
			t.Fatalf("after the placeholder in the %s: %d leak reports, want %d", where, n, i+1)
		}
	}
}

// TestLeakReportedWhenAnswerUnread: a sandbox that sends a leak and never
// reads the 403 does not hold the report (and the revocation) back.
func TestLeakReportedWhenAnswerUnread(t *testing.T) {
	up := newUpstreamCA(t)
	reported := make(chan struct{}, 1)
	s, g := openTestWith(t, up, func(Leak) { reported <- struct{}{} })
	client, gw := net.Pipe() // unbuffered: an unread answer blocks its writer
	t.Cleanup(func() { client.Close(); gw.Close() })
	go s.ServeTunnel(context.Background(), gw, bufio.NewReader(gw), "api.test", 443, func(context.Context) (net.Conn, error) {
		t.Error("a refused request was dialed")
		return nil, errors.New("no dial")
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.certPEM)
	tc := tls.Client(client, &tls.Config{RootCAs: pool, ServerName: "api.test", MinVersion: tls.VersionTLS12})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	req := "GET /v1/models HTTP/1.1\r\nHost: api.test\r\nx-other: " + g.Env["VAULT_TOKEN"].Reveal() + "\r\n\r\n"
	if _, err := io.WriteString(tc, req); err != nil {
		t.Fatal(err)
	}
	// The answer is never read.
	select {
	case <-reported:
	case <-time.After(leakReportWait + 5*time.Second):
		t.Fatal("the leak was not reported while its answer went unread")
	}
}

// TestTunnelRefusesOtherServerName: the ClientHello must name the host
// of the CONNECT (no domain fronting through a bound host).
func TestTunnelRefusesOtherServerName(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	s, _ := openTest(t, up, &lk)
	client, gw := net.Pipe()
	done := make(chan string, 1)
	go func() {
		done <- s.ServeTunnel(context.Background(), gw, bufio.NewReader(gw), "vault.test", 8200, func(context.Context) (net.Conn, error) {
			t.Error("dialed for a refused tunnel")
			return nil, io.EOF
		})
	}()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.certPEM)
	tc := tls.Client(client, &tls.Config{RootCAs: pool, ServerName: "api.test"})
	if err := tc.Handshake(); err == nil {
		t.Fatal("handshake with another server name succeeded")
	}
	client.Close()
	if r := <-done; !strings.Contains(r, "no domain fronting") {
		t.Fatalf("reason %q", r)
	}
}

// TestSessionCAConstrained: the session CA cannot vouch for a host the
// session is not bound to, even if its key were used.
func TestSessionCAConstrained(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	s, _ := openTest(t, up, &lk)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.certPEM)
	for host, ok := range map[string]bool{"vault.test": true, "api.test": true, "evil.example": false, "api.test.evil.example": false} {
		leaf, err := s.ca.leaf(host)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(leaf.Certificate[0])
		_, err = c.Verify(x509.VerifyOptions{DNSName: host, Roots: pool})
		if (err == nil) != ok {
			t.Errorf("%s: verify error %v, want ok=%v", host, err, ok)
		}
	}
}

// TestClosedSessionRefuses: after Close a placeholder is worth nothing.
func TestClosedSessionRefuses(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	s, g := openTest(t, up, &lk)
	var hits atomic.Int32
	srv := up.server(t, "vault.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	c := tunnel(t, s, "vault.test", 8200, srv)
	s.Close()
	req, _ := http.NewRequest(http.MethodGet, "https://vault.test:8200/v1/auth/token/lookup-self", nil)
	req.Header.Set("X-Vault-Token", g.Env["VAULT_TOKEN"].Reveal())
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || hits.Load() != 0 {
		t.Fatalf("status %d, %d requests reached the server", resp.StatusCode, hits.Load())
	}
}

// TestTunnelUpgrade: an upgrade (as kubectl exec, port-forward and
// logs -f make) gets the real token on its request and then relays the
// stream both ways. There is no kubelet here to exec into, so a local
// server that upgrades stands in for the API server's upgrade.
func TestTunnelUpgrade(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	cfg := &configs.Config{Providers: configs.Providers{Vault: &configs.VaultProvider{Address: "https://vault.test:8200"}}}
	d, err := New(Options{Config: cfg, RootsPEM: up.pem, OnLeak: lk.add})
	if err != nil {
		t.Fatal(err)
	}
	s, err := d.Open("s-up", testRole(), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	g, err := s.Deliver("vault", providers.Grant{UpstreamCA: up.pem, Env: map[string]secret.Value{"VAULT_TOKEN": secret.New(realVaultToken)},
		Secrets: []providers.IssuedSecret{{Value: secret.New(realVaultToken), What: "vault token", Name: providers.SecretVaultToken}}})
	if err != nil {
		t.Fatal(err)
	}
	srv := up.server(t, "vault.test", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+realVaultToken || r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no", http.StatusUnauthorized)
			return
		}
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		io.Copy(c, rw) // echo until the client closes
	}))
	client, gw := net.Pipe()
	go s.ServeTunnel(context.Background(), gw, bufio.NewReader(gw), "vault.test", 8200, func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", srv.Listener.Addr().String())
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.ca.certPEM)
	tc := tls.Client(client, &tls.Config{RootCAs: pool, ServerName: "vault.test"})
	defer tc.Close()
	req := "GET /api/v1/namespaces/x/pods/p/exec HTTP/1.1\r\nHost: vault.test:8200\r\nAuthorization: Bearer " +
		g.Env["VAULT_TOKEN"].Reveal() + "\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n"
	if _, err := io.WriteString(tc, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(tc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d, want 101", resp.StatusCode)
	}
	for _, msg := range []string{"ping\n", "a longer line of the stream\n"} {
		if _, err := io.WriteString(tc, msg); err != nil {
			t.Fatal(err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo %q, %v; want %q", got, err, msg)
		}
	}
}
