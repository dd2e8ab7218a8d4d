package packaging

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Paths the .deb installs (or its postinstall creates) that the tests
// look at; every one must be gone after a purge.
var (
	debBinaries = []string{"/usr/bin/credbroker", "/usr/bin/credbroker-daemon"}
	debUnits    = []string{
		"/usr/lib/systemd/system/credbroker.service", "/usr/lib/systemd/system/credbroker.socket",
		"/usr/lib/systemd/user/credbroker.service", "/usr/lib/systemd/user/credbroker.socket",
		"/usr/lib/sysusers.d/credbroker.conf",
	}
	debDocs = []string{
		"/usr/share/man/man1/credbroker.1.gz", "/usr/share/man/man1/credbroker-session-start.1.gz",
		"/usr/share/bash-completion/completions/credbroker",
		"/usr/share/zsh/vendor-completions/_credbroker",
		"/usr/share/fish/vendor_completions.d/credbroker.fish",
		"/usr/share/doc/credbroker/LICENSE", "/usr/share/credbroker/config.yaml",
	}
	// debCreated are made by postinstall (or, /run/credbroker, by the
	// daemon); refuseExistingInstall makes sure none is there before.
	debCreated = []string{"/etc/credbroker/config.yaml", "/etc/credbroker", "/var/lib/credbroker", "/run/credbroker"}
)

// TestDebInstallPurge builds the packages, installs the .deb on this
// machine with dpkg, checks what it put where, reinstalls it (the upgrade
// path: the config stays as the operator left it) and purges it. It
// refuses to run where a credbroker is installed already, and purges what
// it installed however it ends. While it runs, /etc/credbroker/config.yaml
// exists on the machine; the other tests name their config (--config) or
// socket, so the machine-wide default does not change what they run.
func TestDebInstallPurge(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test installs a .deb with dpkg, which needs root; run `make test` as root (CI does)")
	}
	refuseExistingInstall(t)
	_, hadUser := lookupUser(t)
	deb, _ := buildPackages(t)
	t.Cleanup(func() { purgeAfterTest(t, hadUser) })

	mustRun(t, "dpkg", "-i", deb)
	t.Run("binaries", checkBinaries)
	t.Run("user and dirs", checkUserAndDirs)
	t.Run("config", checkConfig)
	t.Run("units verify", checkUnitsVerify)
	t.Run("man pages", checkManPages)
	t.Run("completions", checkCompletions)
	if t.Failed() {
		return
	}

	// Upgrade: the same package again runs postinst as an upgrade; the
	// config the operator edited is left alone.
	const edit = "\n# edited by TestDebInstallPurge\n"
	f, err := os.OpenFile("/etc/credbroker/config.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(edit)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	mustRun(t, "dpkg", "-i", deb)
	if b, err := os.ReadFile("/etc/credbroker/config.yaml"); err != nil || !strings.HasSuffix(string(b), edit) {
		t.Fatalf("reinstalling changed /etc/credbroker/config.yaml (err %v):\n%s", err, b)
	}

	mustRun(t, "dpkg", "--purge", "credbroker")
	if st := debStatus(t); st != "" {
		t.Errorf("after dpkg --purge, dpkg-query reports credbroker as %q, want it unknown", st)
	}
	for _, p := range slices.Concat(debBinaries, debUnits, debDocs, debCreated) {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("after dpkg --purge, %s is still there (lstat: %v)", p, err)
		}
	}
	// Debian keeps system users on purge (files may still carry the uid);
	// docs/operations.md says so. purgeAfterTest removes it if we made it.
	if _, ok := lookupUser(t); !ok {
		t.Error("dpkg --purge removed the credbroker user; the docs say it is kept")
	}
}

// refuseExistingInstall fails the test, touching nothing, when a
// credbroker package or a hand install (docs/operations.md) is on this
// machine: the test's purge would take its config and state with it.
func refuseExistingInstall(t *testing.T) {
	t.Helper()
	if st := debStatus(t); st != "" {
		t.Fatalf("a credbroker package is on this machine already (dpkg status %q); this test installs and purges its own, "+
			"which would remove that install and its config: run it on a machine without one (or dpkg --purge credbroker first)", st)
	}
	for _, p := range slices.Concat(debBinaries, debCreated) {
		if _, err := os.Lstat(p); err == nil {
			t.Fatalf("%s exists: credbroker seems installed by hand on this machine; this test's purge would remove it, "+
				"so it refuses to run here (move that install away, or run the test on another machine)", p)
		}
	}
}

// debStatus is dpkg's status of the credbroker package ("install ok
// installed", "deinstall ok config-files", ...), "" when dpkg knows none.
func debStatus(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Status}", "credbroker").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == 1 {
			return "" // "no packages found matching credbroker"
		}
		t.Fatalf("dpkg-query: %v (is this a Debian machine with dpkg?)", err)
	}
	return strings.TrimSpace(string(out))
}

// purgeAfterTest leaves the machine as the test found it: the package
// purged, the dirs it creates gone (none was there before the test) and,
// when the test made it, the credbroker user removed.
func purgeAfterTest(t *testing.T, hadUser bool) {
	if debStatus(t) != "" {
		if out, err := exec.Command("dpkg", "--purge", "credbroker").CombinedOutput(); err != nil {
			t.Errorf("cleanup: dpkg --purge credbroker: %v\n%s", err, out)
		}
	}
	// What a broken purge left behind (the test has failed for it already).
	for _, p := range debCreated {
		if err := os.RemoveAll(p); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	}
	if hadUser {
		return
	}
	if _, ok := lookupUser(t); ok {
		if out, err := exec.Command("userdel", "credbroker").CombinedOutput(); err != nil {
			t.Errorf("cleanup: userdel credbroker: %v\n%s", err, out)
		}
	}
	if exec.Command("getent", "group", "credbroker").Run() == nil {
		if out, err := exec.Command("groupdel", "credbroker").CombinedOutput(); err != nil {
			t.Errorf("cleanup: groupdel credbroker: %v\n%s", err, out)
		}
	}
}

// mustRun runs a command and fails the test with its output if it fails.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// repoPath is a path in the repository.
func repoPath(p string) string { return filepath.Join(repoRoot, p) }
