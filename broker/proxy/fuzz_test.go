package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/providers"
)

// FuzzRewriteRequest feeds whatever a sandbox could send to a bound host
// (api.test, which gets the inject value) through the rewriter: it never
// panics, and a request it lets through carries no placeholder of a
// secret bound elsewhere (the vault token) anywhere the upstream sees.
func FuzzRewriteRequest(f *testing.F) {
	f.Add([]byte("GET /v1/models HTTP/1.1\r\nHost: api.test\r\nx-api-key: PH_API\r\n\r\n"))
	f.Add([]byte("POST /x?t=PH_VAULT HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhello"))
	f.Add([]byte("PUT /u HTTP/1.1\r\nHost: api.test\r\nAuthorization: Basic UEhfVkFVTFQ=\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
	up := newUpstreamCA(f)
	var lk leaks
	d, err := New(Options{Config: testConfig(f), RootsPEM: up.pem, OnLeak: lk.add})
	if err != nil {
		f.Fatal(err)
	}
	s, err := d.Open("s-fuzz", testRole(), time.Now().Add(time.Hour))
	if err != nil {
		f.Fatal(err)
	}
	g, err := s.Deliver("vault", providers.Grant{Secrets: []providers.IssuedSecret{
		{Value: secret.New(realVaultToken), What: "vault token", Name: providers.SecretVaultToken},
		{Value: secret.New(realAPIKey), What: "inject API_KEY", Name: providers.SecretInjectPrefix + "API_KEY"},
	}})
	if err != nil {
		f.Fatal(err)
	}
	vaultPH, apiPH := g.Secrets[0].Value.Reveal(), g.Secrets[1].Value.Reveal()
	bs := s.matching("api.test", 443)
	f.Fuzz(func(t *testing.T, raw []byte) {
		in := strings.NewReplacer("PH_VAULT", vaultPH, "PH_API", apiPH).Replace(string(raw))
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(in)))
		if err != nil {
			return
		}
		if err := s.prepare(r, "api.test", 443, bs); err != nil {
			return // refused: nothing is sent
		}
		var out bytes.Buffer
		_ = r.Header.Write(&out)
		out.WriteString(r.URL.String())
		if r.Body != nil {
			if _, err := io.Copy(&out, r.Body); err != nil {
				return // a streamed body cut at a placeholder
			}
		}
		if bytes.Contains(out.Bytes(), []byte(vaultPH)) {
			t.Fatal("a placeholder bound to another host went through")
		}
	})
}
