// Package vaulttest starts a real Vault dev server (on 127.0.0.1 unless told
// otherwise) for tests and seeds it with the example roles' policies, token
// role and secrets.
package vaulttest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/internal/testbin"
)

// Version is the Vault release the tests run against (see scripts/build-vault.sh).
const Version = "v1.21.1"

// RootToken is the dev server's root token.
const RootToken = "credbroker-test-root"

// TokenRole is the token role Seed creates.
const TokenRole = "credbroker-session"

// Server is a running Vault dev server.
type Server struct {
	Addr   string
	Client *api.Client // authenticated as root
	cmd    *exec.Cmd
	logs   *bytes.Buffer
}

// Binary returns the Vault binary path: $CREDBROKER_VAULT_BIN, or the cache
// that scripts/build-vault.sh fills.
func Binary() string { return testbin.Path("CREDBROKER_VAULT_BIN", "vault", Version) }

// Start runs a Vault dev server on 127.0.0.1 until the test ends. A missing
// binary is a test failure, never a skip: `make testbins` builds it.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartOn(t, "127.0.0.1")
}

// StartOn is Start listening on host instead, such as the gateway of a
// Docker network whose containers must reach the server (they cannot reach
// the host's loopback).
func StartOn(t testing.TB, host string) *Server {
	t.Helper()
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("vault server binary not found at %s: run `make testbins` (builds Vault %s from the Go module proxy)", bin, Version)
	}
	var lastErr error
	for range 3 {
		s, err := start(bin, host)
		if err == nil {
			t.Cleanup(s.Stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("start vault: %v", lastErr)
	return nil
}

// CPUsEnv names the environment variable that, when set (a taskset CPU
// list such as "0"), runs the Vault server on those CPUs only: the revoke
// benchmarks use it to give Vault and the broker separate cores, as
// separate hosts would.
const CPUsEnv = "CREDBROKER_VAULT_CPUS"

func start(bin, host string) (*Server, error) {
	port, err := freePort(host)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(host, strconv.Itoa(port))
	logs := &bytes.Buffer{}
	args := []string{bin, "server", "-dev", "-dev-root-token-id=" + RootToken, "-dev-listen-address=" + addr, "-log-level=warn"}
	if cpus := os.Getenv(CPUsEnv); cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), "VAULT_ADDR=http://"+addr, "HOME="+os.TempDir())
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("exec %s: %w", bin, err)
	}
	s := &Server{Addr: "http://" + addr, cmd: cmd, logs: logs}
	cfg := api.DefaultConfig()
	cfg.Address = s.Addr
	c, err := api.NewClient(cfg)
	if err != nil {
		s.Stop()
		return nil, err
	}
	c.SetToken(RootToken)
	s.Client = c
	deadline := time.Now().Add(20 * time.Second)
	for {
		h, err := c.Sys().Health()
		if err == nil && h.Initialized && !h.Sealed {
			return s, nil
		}
		if time.Now().After(deadline) || cmd.ProcessState != nil {
			s.Stop()
			return nil, fmt.Errorf("vault did not become healthy at %s: %v\n%s", s.Addr, err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop kills the server.
func (s *Server) Stop() {
	if s.cmd.Process != nil {
		_ = s.cmd.Process.Kill()
		_, _ = s.cmd.Process.Wait()
	}
}

func freePort(host string) (int, error) { return testbin.FreePort(host) }

// ExamplesDir is configs/examples/vault in this module.
func ExamplesDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "configs", "examples", "vault")
}

// Seed prepares the server like configs/examples/vault/setup.sh does.
func Seed(t testing.TB, s *Server) {
	t.Helper()
	ctx := context.Background()
	c := s.Client
	for _, p := range []string{"agent-readonly", "agent-dev"} {
		b, err := os.ReadFile(filepath.Join(ExamplesDir(), p+".hcl"))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Sys().PutPolicyWithContext(ctx, p, string(b)); err != nil {
			t.Fatalf("put policy %s: %v", p, err)
		}
	}
	writes := []struct {
		path string
		data map[string]any
	}{
		{"auth/token/roles/" + TokenRole, map[string]any{
			"allowed_policies": "agent-readonly,agent-dev", "orphan": false, "renewable": true, "token_explicit_max_ttl": "12h"}},
		{"secret/data/agent/readonly/config", map[string]any{"data": map[string]any{"region": "eu-west-1"}}},
		{"secret/data/agent/dev/config", map[string]any{"data": map[string]any{"db_host": "db.internal"}}},
		{"secret/data/shared/build", map[string]any{"data": map[string]any{"ci_cache": "s3://example-cache"}}},
	}
	for _, w := range writes {
		if _, err := c.Logical().WriteWithContext(ctx, w.path, w.data); err != nil {
			t.Fatalf("seed %s: %v", w.path, err)
		}
	}
	if err := c.Sys().MountWithContext(ctx, "pki", &api.MountInput{Type: "pki", Config: api.MountConfigInput{MaxLeaseTTL: "24h"}}); err != nil {
		t.Fatalf("mount pki: %v", err)
	}
	for _, w := range []struct {
		path string
		data map[string]any
	}{
		{"pki/root/generate/internal", map[string]any{"common_name": "credbroker-test-ca", "ttl": "24h"}},
		{"pki/roles/agent-dev", map[string]any{"allowed_domains": "credbroker.local", "allow_subdomains": true, "generate_lease": true, "max_ttl": "2h"}},
	} {
		if _, err := c.Logical().WriteWithContext(ctx, w.path, w.data); err != nil {
			t.Fatalf("seed %s: %v", w.path, err)
		}
	}
}
