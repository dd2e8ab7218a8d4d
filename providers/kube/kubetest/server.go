// Package kubetest runs a real kube-apiserver (with etcd) on 127.0.0.1 for
// tests: RBAC authorization, a service-account signing key generated per
// run, an audit log, and static tokens for an admin and for the broker.
// One server is shared by the tests of a package (Shared, Main), since it
// takes a few seconds to start.
package kubetest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/credbroker/credbroker/internal/testbin"
)

// Version is the kube-apiserver release the tests run against (see
// scripts/build-kube.sh).
const Version = "v1.34.2"

// Users with a static token (--token-auth-file).
const (
	// AdminUser is in system:masters: it may do anything.
	AdminUser = "credbroker-test-admin"
	// BrokerUser has no permissions until a test grants them (for checking
	// the minimal broker RBAC in docs/kubernetes.md).
	BrokerUser = "credbroker-broker"
)

// Kubeconfig contexts Start writes.
const (
	AdminContext  = "admin"
	BrokerContext = "broker"
)

// Server is a running kube-apiserver and its etcd.
type Server struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// CAData is the PEM CA that signed the serving certificate.
	CAData []byte
	// Dir holds the certificates, keys, tokens, kubeconfig and logs.
	Dir string
	// Kubeconfig has contexts AdminContext and BrokerContext.
	Kubeconfig string
	// AuditLog is the API server's audit log (level Metadata).
	AuditLog string
	// Admin is a client authenticated as AdminUser.
	Admin kubernetes.Interface
	// StartTime is how long etcd and the API server took to become ready.
	StartTime time.Duration

	tokens    map[string]string
	apiserver *exec.Cmd
	etcd      *exec.Cmd
}

// Binary returns the kube-apiserver path: $CREDBROKER_KUBE_APISERVER_BIN,
// or the cache that scripts/build-kube.sh fills.
func Binary() string { return testbin.Path("CREDBROKER_KUBE_APISERVER_BIN", "kube-apiserver", Version) }

// EtcdBinary returns $CREDBROKER_ETCD_BIN or etcd on PATH (Debian's
// etcd-server, installed by scripts/install-deps.sh).
func EtcdBinary() (string, error) {
	if b := os.Getenv("CREDBROKER_ETCD_BIN"); b != "" {
		return b, nil
	}
	b, err := exec.LookPath("etcd")
	if err != nil {
		return "", errors.New("etcd not found on PATH: run `make testbins` (installs Debian's etcd-server)")
	}
	return b, nil
}

// Start runs etcd and kube-apiserver until Stop. A missing binary is an
// error that says to run `make testbins`.
func Start() (*Server, error) {
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("kube-apiserver binary not found at %s: run `make testbins` (builds kube-apiserver %s from the Go module proxy)", bin, Version)
	}
	etcd, err := EtcdBinary()
	if err != nil {
		return nil, err
	}
	var lastErr error
	for range 3 { // a free port may be taken between choosing and binding it
		s, err := start(bin, etcd)
		if err == nil {
			return s, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(bin, etcd string) (*Server, error) {
	begin := time.Now()
	dir, err := os.MkdirTemp(tmpRoot(), "credbroker-kubetest-")
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, AuditLog: filepath.Join(dir, "audit.log"), Kubeconfig: filepath.Join(dir, "kubeconfig"),
		tokens: map[string]string{AdminUser: rand.Text(), BrokerUser: rand.Text()}}
	ok := false
	defer func() {
		if !ok {
			s.Stop()
		}
	}()
	if s.CAData, err = writeCerts(dir); err != nil {
		return nil, fmt.Errorf("kubetest: certificates: %w", err)
	}
	if err := s.writeAuthFiles(); err != nil {
		return nil, err
	}
	etcdURL, err := s.startEtcd(etcd)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	if err := s.startAPIServer(bin, etcdURL, port); err != nil {
		return nil, err
	}
	if err := s.waitReady(90 * time.Second); err != nil {
		return nil, err
	}
	if err := s.writeKubeconfig(); err != nil {
		return nil, err
	}
	admin, err := kubernetes.NewForConfig(s.RESTConfig(AdminUser))
	if err != nil {
		return nil, err
	}
	s.Admin = admin
	s.StartTime = time.Since(begin)
	ok = true
	return s, nil
}

// tmpRoot prefers /dev/shm: etcd fsyncs, and tmpfs makes that free.
func tmpRoot() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}

func (s *Server) writeAuthFiles() error {
	var tokens strings.Builder
	fmt.Fprintf(&tokens, "%s,%s,%s,\"system:masters\"\n", s.tokens[AdminUser], AdminUser, AdminUser)
	fmt.Fprintf(&tokens, "%s,%s,%s\n", s.tokens[BrokerUser], BrokerUser, BrokerUser)
	// Metadata level: who did what to which object, never a request or
	// response body (a TokenRequest's response holds the token).
	const policy = "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"
	for name, body := range map[string]string{"tokens.csv": tokens.String(), "audit-policy.yaml": policy} {
		if err := os.WriteFile(filepath.Join(s.Dir, name), []byte(body), 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) startEtcd(bin string) (string, error) {
	cport, err := freePort()
	if err != nil {
		return "", err
	}
	pport, err := freePort()
	if err != nil {
		return "", err
	}
	client := "http://127.0.0.1:" + strconv.Itoa(cport)
	peer := "http://127.0.0.1:" + strconv.Itoa(pport)
	logf, err := os.Create(filepath.Join(s.Dir, "etcd.log"))
	if err != nil {
		return "", err
	}
	defer logf.Close()
	cmd := exec.Command(bin, //nolint:noctx // runs until Stop, not a request
		"--name=kubetest", "--data-dir="+filepath.Join(s.Dir, "etcd"),
		"--listen-client-urls="+client, "--advertise-client-urls="+client,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=kubetest="+peer, "--log-level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("kubetest: exec %s: %w", bin, err)
	}
	s.etcd = cmd
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(client + "/health") //nolint:noctx // local readiness probe
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return client, nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("kubetest: etcd did not become healthy at %s: %v\n%s", client, err, s.tail("etcd.log"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *Server) startAPIServer(bin, etcdURL string, port int) error {
	logf, err := os.Create(filepath.Join(s.Dir, "kube-apiserver.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	f := func(name string) string { return filepath.Join(s.Dir, name) }
	cmd := exec.Command(bin, //nolint:noctx // runs until Stop, not a request
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(port),
		"--cert-dir="+f("certs"),
		"--tls-cert-file="+f("server.crt"), "--tls-private-key-file="+f("server.key"),
		"--service-cluster-ip-range=10.96.0.0/12",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+f("sa.key"),
		"--service-account-signing-key-file="+f("sa.key"),
		"--kubelet-certificate-authority="+f("ca.crt"),
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=RBAC",
		"--token-auth-file="+f("tokens.csv"),
		"--audit-log-path="+s.AuditLog, "--audit-policy-file="+f("audit-policy.yaml"),
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=0",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	dieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kubetest: exec %s: %w", bin, err)
	}
	s.apiserver = cmd
	return nil
}

// waitReady polls /readyz, which includes the RBAC bootstrap roles.
func (s *Server) waitReady(limit time.Duration) error {
	hc := s.httpClient()
	deadline := time.Now().Add(limit)
	var last string
	for {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, s.URL+"/readyz", nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+s.tokens[AdminUser])
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubetest: kube-apiserver not ready at %s after %s (%s)\n%s", s.URL, limit, last, s.tail("kube-apiserver.log"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CAData)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// tail returns the end of a log file in Dir, for failure messages.
func (s *Server) tail(name string) string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, name))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// Stop kills the API server and etcd and removes Dir.
func (s *Server) Stop() {
	for _, c := range []*exec.Cmd{s.apiserver, s.etcd} {
		if c != nil && c.Process != nil {
			_ = c.Process.Kill()
			_, _ = c.Process.Wait()
		}
	}
	if s.Dir != "" {
		_ = os.RemoveAll(s.Dir)
	}
}

func freePort() (int, error) { return testbin.FreePort("127.0.0.1") }

// RESTConfig is a client config for one of the static-token users.
func (s *Server) RESTConfig(user string) *rest.Config {
	return s.TokenConfig(s.tokens[user])
}

// TokenConfig is a client config that presents token.
func (s *Server) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: s.CAData},
		Timeout:         15 * time.Second,
	}
}
