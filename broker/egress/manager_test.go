package egress

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/credbroker/credbroker/configs"
)

func TestManagerSocketPerSession(t *testing.T) {
	dir := filepath.Join(shortDir(t), "egress")
	cfg := testConfig([]string{"web.test"}, nil, nil)
	cfg.Roles["plain"] = configs.Role{Name: "plain"}
	m := NewManager(ManagerConfig{Dir: dir, Config: cfg})
	defer m.CloseAll()

	if p, err := m.Open("s-plain", "plain", os.Geteuid()); p != "" || err != nil {
		t.Errorf("role without egress: %q, %v", p, err)
	}
	uid := os.Geteuid()
	if uid == 0 {
		uid = 12345 // root gives the socket to the session's uid
	}
	p, err := m.Open("s-one", "r", uid)
	if err != nil {
		t.Fatal(err)
	}
	if p != filepath.Join(dir, "s-one.sock") || m.Path("s-one") != p {
		t.Errorf("path %q", p)
	}
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 || int(sys.Uid) != uid {
		t.Errorf("socket mode %v owner %d, want 0600 owned by %d", st.Mode(), sys.Uid, uid)
	}
	if dst, _ := os.Stat(dir); dst.Mode().Perm() != 0o711 {
		t.Errorf("dir mode %v, want 0711", dst.Mode().Perm())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("dir holds %d entries (no bind leftovers wanted)", len(entries))
	}
	if p2, _ := m.Open("s-one", "r", uid); p2 != p {
		t.Errorf("second open: %q", p2)
	}
	if _, err := m.Open("../x", "r", uid); err == nil || !strings.Contains(err.Error(), "invalid session id") {
		t.Errorf("bad id: %v", err)
	}
	c, err := net.Dial("unix", p)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	m.Close("s-one")
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("socket left after Close: %v", err)
	}
	if _, ok := m.Stats("s-one"); ok {
		t.Errorf("stats of a closed gateway")
	}
	long := NewManager(ManagerConfig{Dir: "/tmp/" + strings.Repeat("x", 100), Config: cfg})
	if _, err := long.Open("s-one", "r", uid); err == nil || !strings.Contains(err.Error(), "shorter broker.runtime_dir") {
		t.Errorf("long path: %v", err)
	}
}
