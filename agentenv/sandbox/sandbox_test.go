package sandbox

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// spec is a typical session of a non-root user.
func spec(e Engine) Spec {
	return Spec{
		Engine:     e,
		SessionDir: "/run/user/1000/credbroker/sessions/s-abcdefghijklmnop",
		SessionID:  "s-abcdefghijklmnop",
		Project:    "/home/alice/src/app",
		Image:      DefaultImage,
		UID:        1000, GID: 1000,
		Binary:   "/usr/local/bin/credbroker",
		Name:     "credbroker-s-abcdefghijklmnop",
		Rootless: true,
		Argv:     []string{"sh", "-c", `echo "$HOME" it's`},
	}
}

// egressSock is a session's egress gateway socket on the host.
const egressSock = "/run/user/1000/credbroker/egress/s-abcdefghijklmnop.sock"

// render shows a plan: its environment, then one argument per line, then
// the shell line `sandbox args` prints.
func render(p Plan) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "inherit_env: %v\nenv: %q\npass_env: %q\nset_uid: %d:%d\nargv:\n", p.InheritEnv, p.Env, p.PassEnv, p.SetUID, p.SetGID)
	for _, a := range p.Argv {
		fmt.Fprintf(&b, "  %q\n", a)
	}
	fmt.Fprintf(&b, "shell:\n%s\n", p.Shell())
	return b.Bytes()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	p := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(p, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file (go test -update if intended)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestPlanGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
	}{
		{"docker", func(s *Spec) { s.Engine = Docker }},
		{"docker-host-keep-tty-noproject", func(s *Spec) {
			s.Network, s.KeepEnv, s.TTY, s.Project = "host", []string{"ANTHROPIC_API_KEY", "NPM_TOKEN"}, true, ""
		}},
		{"docker-network-name", func(s *Spec) { s.Network = "agents_net" }},
		{"docker-egress", func(s *Spec) { s.EgressSocket = egressSock }},
		{"podman-egress", func(s *Spec) { s.Engine, s.EgressSocket = Podman, egressSock }},
		{"bwrap-egress", func(s *Spec) { s.Engine, s.Image, s.EgressSocket = Bwrap, "", egressSock }},
		// On the host's network the socket is not mounted: the same lines
		// as without it.
		{"docker-host-keep-tty-noproject", func(s *Spec) {
			s.Network, s.KeepEnv, s.TTY, s.Project, s.EgressSocket = "host", []string{"ANTHROPIC_API_KEY", "NPM_TOKEN"}, true, "", egressSock
		}},
		{"bwrap-root-host-keep", func(s *Spec) {
			s.Engine, s.Image, s.Rootless, s.UID, s.GID, s.Network, s.KeepEnv, s.Project, s.EgressSocket = Bwrap, "", false, 65534, 65534, "host", []string{"ANTHROPIC_API_KEY"}, "", egressSock
		}},
		{"docker-network-name-egress", func(s *Spec) { s.Network, s.EgressSocket = "agents_net", egressSock }},
		{"podman-rootless", func(s *Spec) { s.Engine = Podman }},
		{"podman-root", func(s *Spec) { s.Engine, s.Rootless, s.UID, s.GID = Podman, false, 65534, 65534 }},
		{"bwrap-rootless", func(s *Spec) { s.Engine, s.Image = Bwrap, "" }},
		{"bwrap-root-host-keep", func(s *Spec) {
			s.Engine, s.Image, s.Rootless, s.UID, s.GID, s.Network, s.KeepEnv, s.Project = Bwrap, "", false, 65534, 65534, "host", []string{"ANTHROPIC_API_KEY"}, ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := spec(Docker)
			tc.mod(&s)
			p, err := s.Plan()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name+".golden", render(p))
		})
	}
}

func TestComposeGolden(t *testing.T) {
	s := spec(Compose)
	s.Name = "agent"
	y, err := ComposeService(s)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "compose.golden", y)

	s.Network, s.KeepEnv, s.Project = "agents_net", []string{"ANTHROPIC_API_KEY"}, ""
	s.Argv = []string{"sh", "-c", "echo ${HOME} $$ \"quoted\" \\ \u00e9\n"}
	y, err = ComposeService(s)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "compose-network-keep.golden", y)

	s = spec(Compose)
	s.Name, s.EgressSocket = "agent", egressSock
	y, err = ComposeService(s)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "compose-egress.golden", y)

	if _, err := spec(Compose).Plan(); !errors.Is(err, ErrInvalid) {
		t.Errorf("compose Plan: %v, want ErrInvalid (compose has no command line)", err)
	}
	if _, err := ComposeService(spec(Docker)); !errors.Is(err, ErrInvalid) {
		t.Errorf("ComposeService(docker): %v, want ErrInvalid", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Spec)
		msg  string
	}{
		{"engine", func(s *Spec) { s.Engine = "lxc" }, `engine "lxc"`},
		{"root", func(s *Spec) { s.UID = 0 }, "never runs as root"},
		{"gid", func(s *Spec) { s.GID = -1 }, "gid -1"},
		{"image missing", func(s *Spec) { s.Image = "" }, "image"},
		{"image option", func(s *Spec) { s.Image = "--privileged" }, "image"},
		{"relative session dir", func(s *Spec) { s.SessionDir = "sessions/s-x" }, "session dir"},
		{"unclean binary", func(s *Spec) { s.Binary = "/usr/bin/../bin/credbroker" }, "credbroker binary"},
		{"comma in project", func(s *Spec) { s.Project = "/src/a,readonly=false" }, "project dir"},
		{"network container", func(s *Spec) { s.Network = "container:other" }, "network"},
		{"network option", func(s *Spec) { s.Network = "--privileged" }, "network"},
		{"bwrap network", func(s *Spec) { s.Engine, s.Network = Bwrap, "agents" }, "bubblewrap can only"},
		{"name", func(s *Spec) { s.Name = "-x" }, "name"},
		{"keep-env", func(s *Spec) { s.KeepEnv = []string{"A=B"} }, "keep-env"},
		{"relative egress socket", func(s *Spec) { s.EgressSocket = "egress.sock" }, "egress socket"},
		{"comma in egress socket", func(s *Spec) { s.EgressSocket = "/run/a,readonly=false" }, "egress socket"},
		{"no command", func(s *Spec) { s.Argv = nil }, "no command"},
	} {
		s := spec(Docker)
		tc.mod(&s)
		err := s.Validate()
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want ErrInvalid mentioning %q", tc.name, err, tc.msg)
		}
	}
	bw := spec(Bwrap)
	bw.Project = "/src/a,b" // bwrap takes paths as separate arguments
	if err := bw.Validate(); err != nil {
		t.Errorf("bwrap with a comma in a path: %v", err)
	}
}

func TestCheckProject(t *testing.T) {
	for _, tc := range []struct {
		dir, home string
		ok        bool
	}{
		{"/home/alice/src/app", "/home/alice", true},
		{"/srv/app", "/root", true},
		{"/home/alice..x", "/home/alice", true},
		{"/", "/home/alice", false},
		{"/home/alice", "/home/alice", false},
		{"/home", "/home/alice", false},
		{"/home/alice/src", "", true},
	} {
		err := CheckProject(tc.dir, tc.home)
		if (err == nil) != tc.ok {
			t.Errorf("CheckProject(%q, home %q) = %v, want ok=%v", tc.dir, tc.home, err, tc.ok)
		}
	}
}

// TestCheckReachable reads mode bits only, so it needs no other uid.
func TestCheckReachable(t *testing.T) {
	base := t.TempDir()
	closed := filepath.Join(base, "closed", "sessions", "s-x")
	open := filepath.Join(base, "open", "sessions", "s-x")
	for _, d := range []string{closed, open} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for p, mode := range map[string]os.FileMode{
		filepath.Dir(base): 0o711, base: 0o711, filepath.Join(base, "closed"): 0o700, filepath.Join(base, "open"): 0o711,
		filepath.Dir(open): 0o711, filepath.Dir(closed): 0o711, closed: 0o500,
	} {
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	const other = 54321 // owns nothing here
	err := CheckReachable(closed, other, other)
	if !errors.Is(err, ErrEngine) || !strings.Contains(err.Error(), "mode 0700") || !strings.Contains(err.Error(), "chmod 0711") {
		t.Errorf("through a 0700 dir: %v", err)
	}
	if err := CheckReachable(open, other, other); err != nil {
		t.Errorf("through 0711 dirs to a 0755 dir: %v", err)
	}
	if err := os.Chmod(filepath.Join(base, "closed"), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := CheckReachable(closed, other, other); err == nil || !strings.Contains(err.Error(), "cannot read") {
		t.Errorf("a 0500 dir of another uid: %v", err)
	}
}

// TestCheckBindsBeforeTheSession: before the session exists, the dir its
// session dir will be created in is checked, so Preflight refuses before
// anything is minted (issue 12, item 16).
func TestCheckBindsBeforeTheSession(t *testing.T) {
	base := t.TempDir()
	runtime := filepath.Join(base, "runtime")
	sessions := filepath.Join(runtime, "sessions")
	if err := os.MkdirAll(sessions, 0o711); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(base), base} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	const other = 54321 // owns nothing here
	tests := []struct {
		name     string
		mode     os.FileMode
		sessions string // the dir the session dir will be created in
		want     string
	}{
		{"root daemon's default 0700 runtime dir", 0o700, sessions, "is mode 0700"},
		{"0711 runtime dir", 0o711, sessions, ""},
		{"no sessions dir yet, 0700 runtime dir", 0o700, filepath.Join(runtime, "later"), "is mode 0700"},
		{"no sessions dir yet, 0711 runtime dir", 0o711, filepath.Join(runtime, "later"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.Chmod(runtime, tt.mode); err != nil {
				t.Fatal(err)
			}
			s := Spec{Engine: Bwrap, UID: other, GID: other, SessionDir: filepath.Join(tt.sessions, "s-notyetstarted00")}
			err := checkBinds(s)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrEngine) {
				t.Fatalf("got %v, want ErrEngine", err)
			}
			reach := sessions
			if tt.sessions != sessions {
				reach = runtime // the nearest dir that exists
			}
			for _, w := range []string{tt.want, "uid 54321 cannot reach " + reach, "chmod 0711 broker.runtime_dir"} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestCheckConnectable reads mode bits only, so it needs no other uid.
func TestCheckConnectable(t *testing.T) {
	base := t.TempDir()
	if err := os.Chmod(filepath.Dir(base), 0o711); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(base, "gw.sock")
	if err := os.WriteFile(sock, nil, 0o600); err != nil { // mode bits are all that is read
		t.Fatal(err)
	}
	const other = 54321
	for _, tc := range []struct {
		mode    os.FileMode
		parents bool
		dirMode os.FileMode
		msg     string
	}{
		{0o600, false, 0o711, "cannot connect"},
		{0o666, false, 0o711, ""},
		{0o666, true, 0o711, ""},
		{0o666, true, 0o700, "cannot reach"},
		{0o666, false, 0o700, ""}, // a container engine mounts as root
	} {
		if err := os.Chmod(sock, tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(base, tc.dirMode); err != nil {
			t.Fatal(err)
		}
		err := CheckConnectable(sock, other, other, tc.parents)
		if (tc.msg == "") != (err == nil) || (err != nil && (!errors.Is(err, ErrEngine) || !strings.Contains(err.Error(), tc.msg))) {
			t.Errorf("socket %#o, dir %#o, parents %v: %v, want %q", tc.mode, tc.dirMode, tc.parents, err, tc.msg)
		}
	}
	if err := os.Chmod(base, 0o700); err != nil {
		t.Fatal(err)
	}
}
