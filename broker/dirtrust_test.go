package broker_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/credbroker/credbroker/broker"
)

// TestListenRefusesUntrustedDir: the daemon refuses a socket dir another
// uid owns (created first by another user, to later serve a fake daemon
// there) or that group or others may write to, naming the dir and the fix,
// and creates nothing in it; its own 0700 or 0711 (shared) dir, or a
// missing one, is fine.
func TestListenRefusesUntrustedDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string) // dir does not exist yet
		want  []string                       // nil: Listen succeeds
	}{
		{"missing: created 0700", func(*testing.T, string) {}, nil},
		{"own 0700", mkdir(0o700), nil},
		{"own 0711 (shared mode)", mkdir(0o711), nil},
		{"own 0755", mkdir(0o755), nil},
		{"mode 0777", mkdir(0o777), []string{"is mode 0777, writable by group or others", "chmod 0700"}},
		{"mode 1777 (sticky, like /tmp)", mkdir(0o777 | os.ModeSticky), []string{"is mode 0777", "chmod 0700"}},
		{"mode 0770", mkdir(0o770), []string{"is mode 0770", "chmod 0700"}},
		{"owned by another uid", func(t *testing.T, dir string) {
			if os.Geteuid() != 0 {
				t.Fatal("needs root to chown a dir to another uid (the test suite runs as root): run make test as root, as CI does")
			}
			mkdir(0o700)(t, dir)
			if err := os.Chown(dir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
		}, []string{"is owned by uid 65534, not by the daemon's uid", "remove it", "chown"}},
		{"symlink to an own dir", func(t *testing.T, dir string) {
			real := filepath.Join(t.TempDir(), "real")
			mkdir(0o700)(t, real)
			if err := os.Symlink(real, dir); err != nil {
				t.Fatal(err)
			}
		}, []string{"is a symlink", "remove it"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			tc.setup(t, dir)
			sock := filepath.Join(dir, "broker.sock")
			l, err := broker.Listen(sock, false)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Listen: %v", err)
				}
				l.Close()
				return
			}
			if err == nil {
				l.Close()
				t.Fatalf("Listen accepted the socket dir %s", dir)
			}
			if !errors.Is(err, broker.ErrUntrustedDir) || !strings.Contains(err.Error(), dir) {
				t.Errorf("error %q does not match ErrUntrustedDir or lacks the dir %s", err, dir)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("a refused Listen left %s behind (%v)", sock, err)
			}
		})
	}
}

func mkdir(mode os.FileMode) func(t *testing.T, dir string) {
	return func(t *testing.T, dir string) {
		t.Helper()
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, mode); err != nil { // past the umask
			t.Fatal(err)
		}
	}
}
