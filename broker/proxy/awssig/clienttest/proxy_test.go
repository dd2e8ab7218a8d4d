package clienttest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/credbroker/credbroker/broker/proxy/awssig"
	"github.com/credbroker/credbroker/internal/secret"
)

// resignProxy is the smallest gateway: it re-signs each request and sends
// it to upstream with the Host the client signed (MinIO checks the
// signature over it, as AWS does). It records the payload modes it saw and
// every refusal.
type resignProxy struct {
	upstream *url.URL
	rs       *awssig.Resigner
	mu       sync.Mutex
	modes    map[string]int
	refusals []string
}

func (p *resignProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.upstream.Scheme, p.upstream.Host
	mode := r.Header.Get("X-Amz-Content-Sha256")
	switch len(mode) {
	case 64:
		mode = "sha256 hex"
	case 0:
		mode = "body hashed (not S3)"
	}
	if err := p.rs.Resign(out); err != nil {
		p.refused(err)
		var re *awssig.RefusedError
		if errors.As(err, &re) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "<Error><Code>%s</Code><Message>%s</Message></Error>", re.Code, re.Reason)
			return
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	p.mu.Lock()
	p.modes[out.Method+" "+mode]++
	p.mu.Unlock()
	resp, err := http.DefaultTransport.RoundTrip(out)
	if err != nil {
		p.refused(err)
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func (p *resignProxy) refused(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refusals = append(p.refusals, err.Error())
}

// seen returns the payload modes re-signed so far, sorted.
func (p *resignProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s []string
	for m, n := range p.modes {
		s = append(s, fmt.Sprintf("%s ×%d", m, n))
	}
	sort.Strings(s)
	return s
}

func (p *resignProxy) assertNoRefusals(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.refusals) > 0 {
		t.Fatalf("the proxy refused or failed %d requests: %q", len(p.refusals), p.refusals)
	}
}

// startProxy serves p over HTTP or, with tls, HTTPS; for HTTPS it writes
// the server's certificate to a PEM file for AWS_CA_BUNDLE.
func startProxy(t *testing.T, p *resignProxy, tls bool) (endpoint, caFile string) {
	t.Helper()
	p.modes = map[string]int{}
	srv := httptest.NewUnstartedServer(p)
	if !tls {
		srv.Start()
		t.Cleanup(srv.Close)
		return srv.URL, ""
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	caFile = filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(caFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return srv.URL, caFile
}

// randomCreds are session-shaped placeholders, random per test.
func randomCreds(t *testing.T) awssig.Creds {
	t.Helper()
	b := make([]byte, 60)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	h := hex.EncodeToString(b)
	return awssig.Creds{AccessKeyID: "ASIA" + strings.ToUpper(h[:16]), Secret: secret.New(h[16:56]), SessionToken: secret.New("IQoJ" + h[56:])}
}

func sdkCreds(c awssig.Creds) aws.Credentials {
	return aws.Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.Secret.Reveal(), SessionToken: c.SessionToken.Reveal()}
}

// authField returns a field (Signature, Credential) of r's Authorization.
func authField(t *testing.T, r *http.Request, field string) string {
	t.Helper()
	for p := range strings.SplitSeq(strings.TrimPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 "), ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(p), "="); ok && k == field {
			return v
		}
	}
	t.Fatalf("no %s in Authorization", field)
	return ""
}
