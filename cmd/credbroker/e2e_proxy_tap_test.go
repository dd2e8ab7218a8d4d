package main

import (
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// tapSocket serves a Unix socket that relays each connection to the
// session's gateway socket and records every byte the gateway sends back:
// exactly what the sandbox's forwarder receives.
type tapSocket struct {
	mu   sync.Mutex
	down []byte
	wg   sync.WaitGroup
}

func (tp *tapSocket) bytes() []byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]byte(nil), tp.down...)
}

func (tp *tapSocket) Write(p []byte) (int, error) {
	tp.mu.Lock()
	tp.down = append(tp.down, p...)
	tp.mu.Unlock()
	return len(p), nil
}

func serveTap(t *testing.T, path, gateway string) *tapSocket {
	t.Helper()
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // the sandbox's uid connects
		t.Fatal(err)
	}
	tp := &tapSocket{}
	t.Cleanup(func() { l.Close(); tp.wg.Wait() })
	tp.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			tp.wg.Go(func() {
				defer c.Close()
				up, err := net.Dial("unix", gateway)
				if err != nil {
					return
				}
				defer up.Close()
				go func() { _, _ = io.Copy(up, c); up.(*net.UnixConn).CloseWrite() }()
				_, _ = io.Copy(io.MultiWriter(c, tp), up)
			})
		}
	})
	return tp
}

// TestProxyForwarderSawNoRealSecret: every byte a proxy-delivered
// sandbox's forwarder received from the gateway, recorded on the socket
// mounted into bubblewrap, holds the Vault token's placeholder (Vault's
// lookup-self answer, swapped back) and no real secret (the leak guard,
// which fingerprints the real token and the placeholder, says which).
// Vault speaks plain HTTP here, so the bytes are readable; answers from a
// TLS host are encrypted with the session's keys on this socket.
func TestProxyForwarderSawNoRealSecret(t *testing.T) {
	t.Parallel()
	sandboxtest.RequireEngine(t, "bwrap")
	srv := vaulttest.Start(t)
	vaulttest.Seed(t, srv)
	e := newE2EAt(t, srv, strings.Replace(srv.Addr, "127.0.0.1", vaultHost, 1))
	e.egressConfig(t, "agent-proxy-vault", []string{vaultHost}, nil, "    delivery: proxy\n    vault:\n      policies: [agent-readonly]\n")
	e.serve(t)
	base, err := os.MkdirTemp("", "credbroker-tap-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	project := e.sandboxProject(t, base, nil, nil)
	var si struct {
		ID           string `json:"id"`
		Dir          string `json:"dir"`
		EgressSocket string `json:"egress_socket"`
	}
	out := e.mustCLI(t, "session", "start", "--role", "agent-proxy-vault", "--uid", strconv.Itoa(nobody), "-o", "json").stdout
	if err := json.Unmarshal([]byte(out), &si); err != nil {
		t.Fatal(err)
	}
	tapPath := filepath.Join(base, "tap.sock")
	tap := serveTap(t, tapPath, si.EgressSocket)
	script := `echo "kv: $(curl -sS -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/secret/data/agent/readonly/config")"
echo "self: $(curl -sS -H "X-Vault-Token: $VAULT_TOKEN" "$VAULT_ADDR/v1/auth/token/lookup-self")"`
	argv, env := e.sandboxArgs(t, "--engine", "bwrap", "--session-dir", si.Dir, "--egress-socket", tapPath, "--project", project,
		"--", "sh", "-c", script)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	// As the text form's setpriv does: bubblewrap runs as the sandbox's uid.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(nobody), Gid: uint32(nobody)}}
	got, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sandbox: %v\n%s", err, got)
	}
	e.mustCLI(t, "session", "end", si.ID)
	time.Sleep(100 * time.Millisecond) // the relays end with the gateway
	seen := tap.bytes()
	if !strings.Contains(string(got), "eu-west-1") || !strings.Contains(string(seen), "eu-west-1") {
		t.Fatalf("the KV answer did not come through the tap (agent output %d bytes, tap %d bytes)", len(got), len(seen))
	}
	if !strings.Contains(string(seen), `"id":"hvs.`) {
		t.Fatal("no lookup-self answer in what the forwarder received")
	}
	e.requireNoRealSecrets(t, string(seen))
	t.Logf("the forwarder received %d bytes from the gateway; the guard found only placeholders", len(seen))
}
