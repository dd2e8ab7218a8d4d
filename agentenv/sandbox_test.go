package agentenv

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credbroker/credbroker/internal/secret"
)

// The tests below re-run the test binary as a child: in a new mount
// namespace (to bind-mount a session dir read-only, as a sandbox does) or
// as an unprivileged uid (to act as a non-root broker).
const helperEnv = "AGENTENV_TEST_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		var err error
		switch h {
		case "readonly":
			err = readOnlyScenario(os.Getenv("AGENTENV_DIR"))
		case "nonroot":
			err = nonRootScenario(os.Getenv("AGENTENV_DIR"))
		default:
			err = fmt.Errorf("unknown helper %q", h)
		}
		if err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("ok")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runHelper runs the test binary as helper h and fails on anything but ok.
func runHelper(t *testing.T, h, dir string, attr *syscall.SysProcAttr) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if attr.Credential != nil {
		// The build cache is private to root; give the child its own copy.
		exe = copyExe(t, exe, dir)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+h, "AGENTENV_DIR="+dir)
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("helper %s: %v\n%s", h, err, out)
	}
	noSecret(t, errors.New(string(out)))
}

func copyExe(t *testing.T, exe, dir string) string {
	t.Helper()
	in, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	p := filepath.Join(dir, "agentenv.test")
	out, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestReadOnlyMount bind-mounts a session dir read-only in a private mount
// namespace, as a sandbox launcher does, and checks that the wrapper's
// checks pass there and writes fail.
func TestReadOnlyMount(t *testing.T) {
	w, _ := newWriter(t)
	dir, err := w.Create(testMeta("s-ro"), testFiles(), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckReadOnly(dir); !errors.Is(err, ErrWritable) {
		t.Fatalf("on the host: got %v, want ErrWritable", err)
	}
	attr := &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if os.Geteuid() != 0 {
		attr.Cloneflags |= syscall.CLONE_NEWUSER
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
	}
	runHelper(t, "readonly", dir, attr)
	// The mount lived only in the child's namespace.
	if err := CheckReadOnly(dir); !errors.Is(err, ErrWritable) {
		t.Errorf("after the child: got %v", err)
	}
}

func readOnlyScenario(dir string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Mount(dir, dir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return err
	}
	// Keep the flags a user namespace may not clear (nosuid, nodev...).
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME)
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep, ""); err != nil {
		return fmt.Errorf("remount read-only: %w", err)
	}
	if err := CheckReadOnly(dir); err != nil {
		return fmt.Errorf("CheckReadOnly on a read-only mount: %w", err)
	}
	l, err := LoadSession(dir, t0)
	if err != nil {
		return err
	}
	if l.Env["VAULT_ADDR"] == "" {
		return errors.New("env not loaded")
	}
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o600); !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("create in a read-only session dir: %v", err)
	}
	if err := os.Chmod(dir, 0o700); !errors.Is(err, unix.EROFS) {
		return fmt.Errorf("chmod a read-only session dir: %v", err)
	}
	return nil
}

// TestNonRootBroker runs a whole session life cycle as an unprivileged
// broker: dirs are 0500, so every write must add and then drop u+w, and
// giving files to another uid must be refused clearly.
func TestNonRootBroker(t *testing.T) {
	dir := shmDir(t)
	if os.Geteuid() != 0 {
		if err := nonRootScenario(dir); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Chown(dir, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	runHelper(t, "nonroot", dir, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}})
}

func nonRootScenario(base string) error {
	if os.Geteuid() == 0 {
		return errors.New("must not run as root")
	}
	w := &Writer{Root: filepath.Join(base, "sessions")}
	m := testMeta("s-user")
	m.UID = os.Geteuid() + 1
	_, err := w.Create(m, testFiles(), testEnv())
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("to uid %d", m.UID)) || !strings.Contains(err.Error(), "needs root or CAP_CHOWN") {
		return fmt.Errorf("chown to another uid: got %v", err)
	}
	if ids, _ := w.List(); len(ids) != 0 {
		return fmt.Errorf("sessions left after a failed Create: %v", ids)
	}
	m.UID = -1
	dir, err := w.Create(m, testFiles(), testEnv())
	if err != nil {
		return err
	}
	if err := CheckReadOnly(dir); !errors.Is(err, ErrWritable) || !strings.Contains(err.Error(), "owned by this process") {
		return fmt.Errorf("CheckReadOnly on an owned 0500 dir: %v", err)
	}
	for i := range 20 {
		files := map[string]secret.Value{"vault/token": secret.New(fmt.Sprint(i)), fmt.Sprintf("new/dir%d/f", i%3): secret.New("x")}
		if err := w.Update("s-user", -1, files, map[string]secret.Value{"N": secret.New(fmt.Sprint(i))}); err != nil {
			return err
		}
	}
	if err := w.Update("s-user", os.Geteuid()+1, map[string]secret.Value{"vault/token": secret.New("x")}, nil); err == nil {
		return errors.New("Update chowned to another uid as non-root")
	}
	if err := w.MarkRevoked("s-user"); err != nil {
		return err
	}
	if v, err := w.ReadFile("s-user", "vault/token"); err != nil || v.Reveal() != "19" {
		return fmt.Errorf("ReadFile: %v", err)
	}
	if _, err := LoadSession(dir, time.Now()); !errors.Is(err, ErrRevoked) {
		return fmt.Errorf("LoadSession: %v", err)
	}
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := fs.FileMode(0o400)
		if d.IsDir() {
			want = fs.ModeDir | 0o500
		}
		if fi.Mode() != want || strings.HasPrefix(d.Name(), tmpPrefix) {
			return fmt.Errorf("%s: mode %v, want %v", p, fi.Mode(), want)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := w.Remove("s-user"); err != nil {
		return err
	}
	if _, err := os.Lstat(dir); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("session dir still there: %v", err)
	}
	return w.CleanTemp()
}
