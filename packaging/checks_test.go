package packaging

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/credbroker/credbroker/configs"
)

// lookupUser is the credbroker user, if it exists.
func lookupUser(t *testing.T) (*user.User, bool) {
	t.Helper()
	u, err := user.Lookup("credbroker")
	if err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			t.Fatalf("look up the credbroker user: %v", err)
		}
		return nil, false
	}
	return u, true
}

// credbrokerIDs are the installed credbroker user's uid and gid.
func credbrokerIDs(t *testing.T) (uid, gid int) {
	t.Helper()
	u, ok := lookupUser(t)
	if !ok {
		t.Fatal("the package did not create the credbroker user")
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid
}

// checkBinaries: the installed CLI and daemon are the ones make built.
func checkBinaries(t *testing.T) {
	for _, name := range []string{"credbroker", "credbroker-daemon"} {
		want := mustRun(t, repoPath("bin/"+name), "version")
		got := mustRun(t, "/usr/bin/"+name, "version")
		if !strings.HasPrefix(got, "credbroker ") || got != want {
			t.Errorf("/usr/bin/%s version = %q, want %q (bin/%s, which make package built)", name, got, want, name)
		}
	}
}

// checkUserAndDirs: the system user the unit runs as, with no login, and
// its state dir.
func checkUserAndDirs(t *testing.T) {
	uid, _ := credbrokerIDs(t)
	ent := strings.Split(strings.TrimSpace(mustRun(t, "getent", "passwd", "credbroker")), ":")
	if len(ent) != 7 || ent[5] != "/var/lib/credbroker" || ent[6] != "/usr/sbin/nologin" {
		t.Errorf("credbroker user: %q, want home /var/lib/credbroker and shell /usr/sbin/nologin", ent)
	}
	if uid == 0 || uid >= 1000 {
		t.Errorf("credbroker uid %d, want a system uid (1-999)", uid)
	}
	st := statT(t, "/var/lib/credbroker")
	if int(st.Uid) != uid || st.Mode&0o7777 != 0o700 || st.Mode&syscall.S_IFDIR == 0 {
		t.Errorf("/var/lib/credbroker: owner %d mode %o, want a dir owned by credbroker (%d), 0700", st.Uid, st.Mode&0o7777, uid)
	}
}

// checkConfig: postinstall wrote the config with the credbroker user's
// uid as broker.daemon_uid, readable by the daemon and not by others, and
// it passes `credbroker config check`.
func checkConfig(t *testing.T) {
	const conf = "/etc/credbroker/config.yaml"
	uid, gid := credbrokerIDs(t)
	st := statT(t, conf)
	if st.Uid != 0 || int(st.Gid) != gid || st.Mode&0o7777 != 0o640 {
		t.Errorf("%s: owner %d:%d mode %o, want root:credbroker (0:%d) 0640", conf, st.Uid, st.Gid, st.Mode&0o7777, gid)
	}
	mustRun(t, "/usr/bin/credbroker", "config", "check", "--config", conf)
	cfg, err := configs.Load(conf)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Broker.DaemonUID == nil || *cfg.Broker.DaemonUID != uid {
		t.Errorf("%s: broker.daemon_uid = %v, want the credbroker uid %d", conf, cfg.Broker.DaemonUID, uid)
	}
}

// checkUnitsVerify runs `systemd-analyze verify` on the units as
// installed (ExecStart must name an existing binary); any warning fails.
func checkUnitsVerify(t *testing.T) {
	for _, tt := range []struct {
		dir  string
		user bool
	}{{"/usr/lib/systemd/system", false}, {"/usr/lib/systemd/user", true}} {
		args := []string{"verify", tt.dir + "/credbroker.socket", tt.dir + "/credbroker.service"}
		cmd := exec.Command("systemd-analyze", args...)
		if tt.user {
			cmd = exec.Command("systemd-analyze", append([]string{"--user"}, args...)...)
			cmd.Env = append(os.Environ(), "XDG_RUNTIME_DIR="+t.TempDir()) // the user manager needs one
		}
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, out)
		}
		b, err := os.ReadFile(tt.dir + "/credbroker.service")
		if err != nil || !strings.Contains(string(b), "\nExecStart=/usr/bin/credbroker serve") {
			t.Errorf("%s/credbroker.service does not start /usr/bin/credbroker serve (err %v)", tt.dir, err)
		}
	}
}

// seeAlso finds the pages a man page refers to, e.g. credbroker-session(1).
var seeAlso = regexp.MustCompile(`\\fB(credbroker[a-z-]*)\(1\)\\fP`)

// checkManPages: credbroker(1) and a page for every command it lists.
func checkManPages(t *testing.T) {
	root := readGzip(t, "/usr/share/man/man1/credbroker.1.gz")
	refs := seeAlso.FindAllStringSubmatch(root, -1)
	if !strings.Contains(root, `.TH "CREDBROKER" "1"`) || len(refs) < 5 {
		t.Fatalf("credbroker.1: no .TH header or fewer than 5 commands in SEE ALSO:\n%s", root)
	}
	for _, r := range refs {
		page := readGzip(t, filepath.Join("/usr/share/man/man1", r[1]+".1.gz"))
		if !strings.Contains(page, ".SH NAME\n"+r[1]+" - ") {
			t.Errorf("%s.1.gz has no NAME section for %s", r[1], r[1])
		}
	}
}

// checkCompletions: bash-completion's loader finds the installed bash
// script and it completes a subcommand through the installed binary; the
// zsh and fish scripts are there and ask the binary too.
func checkCompletions(t *testing.T) {
	const script = `source /usr/share/bash-completion/bash_completion
_completion_loader credbroker
COMP_WORDS=(credbroker session st); COMP_CWORD=2
COMP_LINE="credbroker session st"; COMP_POINT=${#COMP_LINE}
__start_credbroker
printf '%s\n' "${COMPREPLY[@]}"`
	cmd := exec.Command("bash", "-c", script)
	cmd.Env = append(os.Environ(), "PATH=/usr/bin:/bin")
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) != "start" {
		t.Errorf("bash completion of `credbroker session st`: %q (%v), want start; is bash-completion installed (scripts/install-deps.sh)?", out, err)
	}
	for p, want := range map[string]string{
		"/usr/share/zsh/vendor-completions/_credbroker":        "#compdef credbroker",
		"/usr/share/fish/vendor_completions.d/credbroker.fish": "complete -c credbroker",
	} {
		b, err := os.ReadFile(p)
		if err != nil || !strings.Contains(string(b), want) || !strings.Contains(string(b), "__complete") {
			t.Errorf("%s: no %q or no __complete call (err %v)", p, want, err)
		}
	}
}

// readGzip is the uncompressed content of a .gz file.
func readGzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// statT is stat(2) of path.
func statT(t *testing.T, path string) syscall.Stat_t {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st
}
