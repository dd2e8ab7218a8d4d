package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// chainHost is the name the egress chain tests reach their servers by:
// broker.egress.hosts maps it to 127.0.0.1 (a loopback name would be
// skipped by Go's ProxyFromEnvironment, and inside the sandbox 127.0.0.1
// is the sandbox's own).
const chainHost = "allowed.credbroker.test"

// testCA is a throwaway CA that signs server certificates for names.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	PEM  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "credbroker egress test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a server certificate for names.
func (ca *testCA) serverCert(t *testing.T, names ...string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: names[0]},
		DNSNames: names, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// pathLog is a test server's record of the paths it was asked for, and
// of its downloads on /slow: one value on started when one begins, the
// time its connection was closed under it on closed.
type pathLog struct {
	mu    sync.Mutex
	paths []string

	started chan struct{}
	closed  chan time.Time
}

func (l *pathLog) add(p string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = append(l.paths, p)
}

// has reports whether any request asked for path.
func (l *pathLog) has(path string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.paths {
		if p == path {
			return true
		}
	}
	return false
}

// slow trickles a download (1 KB every 20 ms, for at most two minutes)
// until the client's connection closes, and reports when that happened.
func (l *pathLog) slow(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", strconv.Itoa(100<<20))
	l.started <- struct{}{}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	chunk := []byte(strings.Repeat("x", 1024))
	for end := time.Now().Add(2 * time.Minute); time.Now().Before(end); {
		select {
		case <-r.Context().Done():
			l.closed <- time.Now()
			return
		case <-tick.C:
			if _, err := w.Write(chunk); err != nil {
				l.closed <- time.Now()
				return
			}
			w.(http.Flusher).Flush()
		}
	}
}

// chainServer is a loopback server answering body (or, on /slow, a
// download that trickles until its connection closes) and logging the
// paths it was asked for; with ca it serves HTTPS with a certificate for
// chainHost.
func chainServer(t *testing.T, body string, ca *testCA) (port int, log *pathLog) {
	t.Helper()
	log = &pathLog{started: make(chan struct{}, 8), closed: make(chan time.Time, 8)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		log.add(r.URL.Path)
		if r.URL.Path == "/slow" {
			log.slow(w, r)
			return
		}
		io.WriteString(w, body)
	}))
	if ca != nil {
		srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t, chainHost)}, MinVersion: tls.VersionTLS12}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return int(netip.MustParseAddrPort(srv.Listener.Addr().String()).Port()), log
}

// egressConfig adds broker.egress.hosts (chainHost and names, all →
// 127.0.0.1) to e's config, and role with the given egress allow rules
// and extra YAML (provider blocks, indented four spaces).
func (e *e2e) egressConfig(t *testing.T, role string, names, allow []string, extra string) {
	t.Helper()
	cfg, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	hosts := ""
	for _, n := range append([]string{chainHost}, names...) {
		hosts += "      " + n + ": 127.0.0.1\n"
	}
	text := strings.Replace(string(cfg), "  refresh_interval: 1s\n",
		"  refresh_interval: 1s\n  egress:\n    hosts:\n"+hosts, 1)
	quoted := make([]string, len(allow))
	for i, a := range allow {
		quoted[i] = strconv.Quote(a)
	}
	text += fmt.Sprintf("  %s:\n    ttl: 15m\n%s    egress:\n      allow: [%s]\n", role, extra, strings.Join(quoted, ", "))
	if err := os.WriteFile(e.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// sandboxProject makes a project dir under base owned by the sandbox's uid
// (nobody) holding files and hard links (name → host file: a binary the
// sandbox could not otherwise see), and gives nobody search permission on
// the dirs above the session dirs and the egress sockets (docs/sandbox.md).
func (e *e2e) sandboxProject(t *testing.T, base string, files map[string][]byte, links map[string]string) string {
	t.Helper()
	for _, d := range []string{e.dir, e.runtimeDir} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	project := filepath.Join(base, "project")
	if err := os.MkdirAll(project, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(base, 0o711); err != nil {
		t.Fatal(err)
	}
	for name, target := range links {
		if err := os.Link(target, filepath.Join(project, name)); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(project, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(project, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	return project
}
