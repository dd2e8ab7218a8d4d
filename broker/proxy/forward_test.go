package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// forward sends one plain-http proxy request through ServeForward to
// upstream and returns the answer as the sandbox reads it.
func forward(t *testing.T, s *Session, host string, port int, upstream string, req *http.Request) *http.Response {
	t.Helper()
	client, gw := net.Pipe()
	go func() {
		br := bufio.NewReader(gw)
		r, err := http.ReadRequest(br)
		if err != nil {
			t.Error(err)
			return
		}
		s.ServeForward(context.Background(), gw, br, r, host, port, func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", upstream)
		})
		gw.Close()
	}()
	go func() { _ = req.WriteProxy(client) }()
	resp, err := http.ReadResponse(bufio.NewReader(client), req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestForwardPlainHTTP: a plain-http request to a bound host gets the
// real token; one to another host carrying a placeholder is refused
// before anything is dialed.
func TestForwardPlainHTTP(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	s, g := openTest(t, up, &lk)
	ph := g.Env["VAULT_TOKEN"].Reveal()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "token="+r.Header.Get("X-Vault-Token"))
	}))
	defer srv.Close()
	// vault.test:8200 is bound (the config's address); plain http here.
	req, _ := http.NewRequest(http.MethodGet, "http://vault.test:8200/v1/sys/health", nil)
	req.Header.Set("X-Vault-Token", ph)
	resp := forward(t, s, "vault.test", 8200, srv.Listener.Addr().String(), req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "token="+ph {
		t.Fatalf("the server's echo of the real token was not swapped back (status %d, %d bytes)", resp.StatusCode, len(body))
	}

	req, _ = http.NewRequest(http.MethodGet, "http://other.test/?t="+ph, nil)
	resp = forward(t, s, "other.test", 80, "127.0.0.1:1", req) // never dialed
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if ls := lk.wait(1); len(ls) != 1 || ls[0].Where != "url" || ls[0].Host != "other.test" {
		t.Fatalf("leak reports %+v", ls)
	}
}

// TestDeliverRenewal: a renewal keeps the placeholder and moves the real
// value on.
func TestDeliverRenewal(t *testing.T) {
	up := newUpstreamCA(t)
	var lk leaks
	s, g := openTest(t, up, &lk)
	ph := g.Env["VAULT_TOKEN"].Reveal()
	const renewed = "hvs.RENEWEDRENEWEDRENEWEDRENEWEDRENEW999"
	g2, err := s.Deliver("vault", providers.Grant{
		Files:   map[string]secret.Value{"vault/token": secret.New(renewed)},
		Secrets: []providers.IssuedSecret{{Value: secret.New(renewed), What: "vault token", Name: providers.SecretVaultToken}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if g2.Files["vault/token"].Reveal() != ph {
		t.Fatal("the renewal changed the placeholder")
	}
	if got := s.snapshot()[providers.SecretVaultToken].real.Reveal(); got != renewed {
		t.Fatal("the gateway still holds the old real value")
	}
	for _, is := range g2.Secrets {
		if strings.Contains(is.Value.Reveal(), "RENEWED") {
			t.Fatal("Deliver returned a real value as a placeholder")
		}
	}
}
