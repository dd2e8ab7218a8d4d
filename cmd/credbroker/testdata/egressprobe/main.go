// Command egressprobe is the HTTPS client of the Docker egress test: the
// FROM scratch sandbox image has only busybox, whose wget speaks no TLS.
//
//	egressprobe CAFILE URL
//
// GETs URL through the proxy the environment names (HTTPS_PROXY), trusting
// only the CA in CAFILE, and prints the body; on failure it prints
// "error: ..." and exits 1.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("usage: egressprobe CAFILE URL")
	}
	pem, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in %s", args[0])
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
	resp, err := c.Get(args[1])
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	fmt.Println(string(b))
	return nil
}
