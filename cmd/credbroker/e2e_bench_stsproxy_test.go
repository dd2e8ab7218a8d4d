package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// stsProxy stands in for the AWS STS endpoint for clients that cannot be
// pointed at another URL (aws-vault v7.2.0 resolves STS itself and has no
// endpoint setting): an HTTP CONNECT proxy (HTTPS_PROXY) that accepts
// tunnels to sts*.amazonaws.com:443 only, terminates TLS with a
// certificate from a throwaway CA (SSL_CERT_FILE) and forwards the
// decrypted bytes unchanged to MinIO, which checks the SigV4 signature
// against the Host header the client signed.
type stsProxy struct {
	URL    string // http://127.0.0.1:port, for HTTPS_PROXY
	CAFile string // PEM of the CA, for SSL_CERT_FILE
	Pool   *x509.CertPool

	target string // MinIO host:port
	l      net.Listener
	tlsCfg *tls.Config
	wg     sync.WaitGroup
}

func startSTSProxy(tb testing.TB, target string) *stsProxy {
	tb.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "credbroker bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sts.amazonaws.com"},
		DNSNames:  []string{"sts.amazonaws.com", "*.amazonaws.com", "sts.us-east-1.amazonaws.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		tb.Fatal(err)
	}
	p := &stsProxy{CAFile: filepath.Join(tb.TempDir(), "ca.pem"), Pool: x509.NewCertPool(), target: target}
	p.Pool.AddCert(ca)
	if err := os.WriteFile(p.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		tb.Fatal(err)
	}
	p.tlsCfg = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER, caDER}, PrivateKey: leafKey}}}
	p.l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p.URL = "http://" + p.l.Addr().String()
	p.wg.Go(p.accept)
	tb.Cleanup(func() { p.l.Close(); p.wg.Wait() })
	return p
}

func (p *stsProxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.wg.Go(func() { p.tunnel(c) })
	}
}

// tunnel answers one CONNECT and pipes the decrypted stream to MinIO.
func (p *stsProxy) tunnel(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return
	}
	host, port, _ := net.SplitHostPort(req.Host)
	if req.Method != http.MethodConnect || port != "443" || !strings.HasPrefix(host, "sts") || !strings.HasSuffix(host, ".amazonaws.com") {
		_, _ = io.WriteString(c, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
		return
	}
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	tc := tls.Server(&bufConn{Conn: c, r: br}, p.tlsCfg)
	if err := tc.Handshake(); err != nil {
		return
	}
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() { _, _ = io.Copy(up, tc); _ = up.(*net.TCPConn).CloseWrite(); close(done) }()
	_, _ = io.Copy(tc, up)
	_ = tc.CloseWrite()
	<-done
}

// bufConn reads through the bufio.Reader that read the CONNECT request.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }
