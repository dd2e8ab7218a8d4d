package egress

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestOtherUIDIsRefused: even when the socket's mode lets anyone connect
// (a daemon that is not root cannot give it away), a connection whose
// SO_PEERCRED uid is not the session's is refused and audited.
func TestOtherUIDIsRefused(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root to run a client under another uid: run make test as root, as CI does")
	}
	e := newTestEnv(t, testConfig([]string{"web.test"}, nil, map[string]string{"web.test": "127.0.0.1"}))
	if err := os.Chmod(filepath.Dir(e.sock), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(e.sock, 0o666); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("curl", "-sS", "--max-time", "5", "--proxy", "socks5h://localhost"+e.sock, "https://web.test/")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 54321, Gid: 54321}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("curl as uid 54321 got through: %s", out)
	}
	r := e.waitRecords(1)[0]
	if r.Allowed || !strings.Contains(r.Reason, "peer uid 54321 is not the session's") {
		t.Errorf("record %+v", r)
	}
	if e.dialCount() != 0 {
		t.Errorf("dialed for a refused peer")
	}
}
