package packaging

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestRPMContents checks the .rpm's file list and scripts with Debian's
// rpm tool. Installing an .rpm on this Debian machine would fight dpkg
// over the same paths and prove little, so the install, upgrade and purge
// are tested on the .deb, which carries the same files and scripts.
func TestRPMContents(t *testing.T) {
	_, rpm := buildPackages(t)
	if _, err := exec.LookPath("rpm"); err != nil {
		t.Fatal("rpm not found: install Debian's rpm package (scripts/install-deps.sh does, through make testbins)")
	}
	files := strings.Fields(mustRun(t, "rpm", "-qpl", rpm))
	for _, want := range []string{
		"/usr/bin/credbroker", "/usr/bin/credbroker-daemon",
		"/usr/lib/systemd/system/credbroker.service", "/usr/lib/systemd/system/credbroker.socket",
		"/usr/lib/systemd/user/credbroker.service", "/usr/lib/systemd/user/credbroker.socket",
		"/usr/lib/sysusers.d/credbroker.conf", "/usr/share/credbroker/config.yaml",
		"/usr/share/man/man1/credbroker.1.gz", "/usr/share/bash-completion/completions/credbroker",
		"/usr/share/zsh/site-functions/_credbroker", "/usr/share/fish/vendor_completions.d/credbroker.fish",
	} {
		if !slices.Contains(files, want) {
			t.Errorf("rpm -qpl %s: no %s in\n%s", rpm, want, strings.Join(files, "\n"))
		}
	}
	if slices.Contains(files, "/usr/share/zsh/vendor-completions/_credbroker") {
		t.Error("the .rpm has the Debian zsh path /usr/share/zsh/vendor-completions; want only site-functions")
	}
	scripts := mustRun(t, "rpm", "-qp", "--scripts", rpm)
	for _, want := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet", "systemd-sysusers /usr/lib/sysusers.d/credbroker.conf"} {
		if !strings.Contains(scripts, want) {
			t.Errorf("rpm -qp --scripts: no %q in\n%s", want, scripts)
		}
	}
	if arch := mustRun(t, "rpm", "-qp", "--qf", "%{ARCH}", rpm); arch == "" || strings.Contains(arch, "(none)") {
		t.Errorf("rpm arch = %q", arch)
	}
}
