package agentenv

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
)

func TestLoadSession(t *testing.T) {
	w, _ := newWriter(t)
	for _, id := range []string{"s-live", "s-revoked"} {
		if _, err := w.Create(testMeta(id), testFiles(), testEnv()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.MarkRevoked("s-revoked"); err != nil {
		t.Fatal(err)
	}
	// Hand-made dirs for the malformed cases.
	base := shmDir(t)
	mk := func(name string, files map[string]string) string {
		d := filepath.Join(base, name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for f, c := range files {
			if err := os.WriteFile(filepath.Join(d, f), []byte(c), 0o400); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	goodMeta := `{"id":"s-x","role":"r","expires_at":"2026-03-01T13:00:00Z"}`
	noEnv := mk("no-env", map[string]string{MetaFile: goodMeta})
	noMeta := mk("no-meta", map[string]string{EnvFile: "A=1\n"})
	badMeta := mk("bad-meta", map[string]string{MetaFile: `{"id":`, EnvFile: "A=1\n"})
	badEnv := mk("bad-env", map[string]string{MetaFile: goodMeta, EnvFile: "A=1\nTOKEN=" + marker + " x\n"})
	linked := mk("linked", map[string]string{EnvFile: "A=1\n"})
	if err := os.Symlink(filepath.Join(noEnv, MetaFile), filepath.Join(linked, MetaFile)); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(base, "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		dir     string
		now     time.Time
		wantErr error
		want    string
	}{
		{"live", w.Dir("s-live"), t0, nil, ""},
		{"one ns before expiry", w.Dir("s-live"), t1.Add(-time.Nanosecond), nil, ""},
		{"at expiry", w.Dir("s-live"), t1, ErrExpired, "session s-live (role deploy) expired at 2026-03-01T13:00:00Z"},
		{"after expiry", w.Dir("s-live"), t1.Add(time.Hour), ErrExpired, "expired"},
		{"revoked", w.Dir("s-revoked"), t0, ErrRevoked, "session s-revoked (role deploy) has been revoked"},
		{"missing dir", filepath.Join(base, "nope"), t0, ErrNoSession, "does not exist (is it mounted into the sandbox?)"},
		{"not a dir", notDir, t0, ErrNoSession, "is not a directory"},
		{"no session.json", noMeta, t0, ErrNoSession, "has no session.json"},
		{"no env", noEnv, t0, ErrNoSession, "has no env"},
		{"malformed session.json", badMeta, t0, nil, "parse session.json"},
		{"malformed env", badEnv, t0, nil, "env line 2: value of TOKEN: character space must be quoted"},
		{"symlinked session.json", linked, t0, nil, "too many levels of symbolic links"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := LoadSession(tt.dir, tt.now)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if l.Dir != tt.dir || l.Env["VAULT_ADDR"] != "http://127.0.0.1:8200" {
					t.Errorf("loaded %+v", l)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("got %v, want errors.Is %v", err, tt.wantErr)
			}
			noSecret(t, err)
		})
	}
}

func TestLoadSessionRelativeDir(t *testing.T) {
	w, _ := newWriter(t)
	if _, err := w.Create(testMeta("s-rel"), nil, nil); err != nil {
		t.Fatal(err)
	}
	t.Chdir(w.Root)
	l, err := LoadSession("s-rel", t0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Dir != w.Dir("s-rel") {
		t.Errorf("Dir = %s, want the absolute path %s", l.Dir, w.Dir("s-rel"))
	}
}

// hostEnv is a developer's environment: what an agent may have, and what
// it must not (credentials, sockets, config redirects, odd names).
var hostEnv = []string{
	"PATH=/usr/bin", "HOME=/home/u", "USER=u", "LOGNAME=u", "SHELL=/bin/bash", "PWD=/home/u/src", "TMPDIR=/tmp",
	"TERM=xterm-256color", "COLORTERM=truecolor", "NO_COLOR=1", "LANG=C.UTF-8", "LC_ALL=C.UTF-8", "LC_TIME=de_DE.UTF-8", "TZ=UTC",
	"OLDPWD=/", "TOKENIZERS_PARALLELISM=false", "HTTPS_PROXY=http://proxy:3128",
	"AWS_ACCESS_KEY_ID=AKIAHOST", "AWS_SECRET_ACCESS_KEY=host", "AWS_PROFILE=admin", "AWS_REGION=eu-west-1",
	"VAULT_TOKEN=hvs.host", "VAULT_ADDR=https://vault.corp", "KUBECONFIG=/home/u/.kube/config",
	"GITHUB_TOKEN=ghp_x", "ANTHROPIC_API_KEY=sk-ant-x", "OPENAI_API_KEY=sk-x",
	// Missed by the old deny-list (issue 12, item 9).
	"DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus", "XDG_RUNTIME_DIR=/run/user/1000",
	"SSH_AUTH_SOCK=/run/user/1000/ssh.sock", "SSH_AGENT_PID=42", "GNOME_KEYRING_CONTROL=/run/user/1000/keyring",
	"GIT_CONFIG_PARAMETERS='http.extraheader'='Authorization: basic eDp5'",
	"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=http.extraHeader", "GIT_CONFIG_VALUE_0=Authorization: bearer x",
	"VSCODE_IPC_HOOK_CLI=/run/user/1000/vscode-ipc.sock", "NVIM=/run/user/1000/nvim.0", "NVIM_LISTEN_ADDRESS=/tmp/nvim",
	"KITTY_LISTEN_ON=unix:/tmp/kitty", "TMUX=/tmp/tmux-1000/default,1,0", "DISPLAY=:0", "WAYLAND_DISPLAY=wayland-0",
	"npm_config_//registry.npmjs.org/:_authToken=npm_x", "npm_config_registry=https://registry.npmjs.org/",
	"FOO_SECRET=x", "DEPLOY_SIGNING_SEED=x", "DATABASE_URL=postgres://app:pw@db/app",
	"MALFORMED",
}

func TestBuildEnv(t *testing.T) {
	l := &Loaded{Dir: "/run/credbroker/session", Env: map[string]string{
		"AWS_CONFIG_FILE": SessionDirRef + "/aws/config",
		"AWS_PROFILE":     "credbroker",
		"VAULT_ADDR":      "http://127.0.0.1:8200",
		"VAULT_TOKEN":     "hvs.session",
		"KUBECONFIG":      SessionDirRef + "/kube/config",
		"LANG":            "en_US.UTF-8",
		"MIDDLE":          "x" + SessionDirRef,
		EnvSessionID:      "s-1",
	}}
	base := []string{
		"COLORTERM=truecolor", "HOME=/home/u", "LC_ALL=C.UTF-8", "LC_TIME=de_DE.UTF-8", "LOGNAME=u", "NO_COLOR=1",
		"PATH=/usr/bin", "PWD=/home/u/src", "SHELL=/bin/bash", "TERM=xterm-256color", "TMPDIR=/tmp", "TZ=UTC", "USER=u",
	}
	session := []string{
		"AWS_CONFIG_FILE=/run/credbroker/session/aws/config", "AWS_PROFILE=credbroker",
		"CREDBROKER_SESSION_DIR=/run/credbroker/session", "CREDBROKER_SESSION_ID=s-1",
		"KUBECONFIG=/run/credbroker/session/kube/config", "LANG=en_US.UTF-8", "MIDDLE=x" + SessionDirRef,
		"VAULT_ADDR=http://127.0.0.1:8200", "VAULT_TOKEN=hvs.session",
	}
	urlCred := "its value holds a URL with credentials"
	tests := []struct {
		name    string
		host    []string
		loaded  *Loaded
		opts    EnvOptions
		want    []string // sorted
		refused map[string]string
	}{
		{name: "base set and session only", host: hostEnv, loaded: l, want: sortedUnion(base, session)},
		{name: "keep names and a prefix", host: hostEnv, loaded: l,
			opts: EnvOptions{Keep: []string{"ANTHROPIC_API_KEY", "HTTPS_PROXY", "npm_config_*", "UNSET"}},
			want: sortedUnion(base, session, []string{"ANTHROPIC_API_KEY=sk-ant-x", "HTTPS_PROXY=http://proxy:3128", "npm_config_registry=https://registry.npmjs.org/"}),
			// The prefix matches npm's auth token, whose name is no plain name.
			refused: map[string]string{"npm_config_//registry.npmjs.org/:_authToken": "not a plain variable name"}},
		{name: "kept URLs with credentials are refused", loaded: nil,
			host: []string{"HTTPS_PROXY=http://alice:pw@proxy:3128", "ALL_PROXY=socks5://tok@proxy", "GIT_REMOTE=https://ghp_x@github.com/o/r",
				"MIRRORS=http://a.example, https://u:p@b.example/x", "SSH_REMOTE=ssh://git@github.com/o/r", "PLAIN=https://example.com/a@b",
				"PATH=/bin:http://u:p@x/"},
			opts:    EnvOptions{Keep: []string{"HTTPS_PROXY", "ALL_PROXY", "GIT_REMOTE", "MIRRORS", "SSH_REMOTE", "PLAIN"}},
			want:    []string{"PLAIN=https://example.com/a@b", "SSH_REMOTE=ssh://git@github.com/o/r"},
			refused: map[string]string{"HTTPS_PROXY": urlCred, "ALL_PROXY": urlCred, "GIT_REMOTE": urlCred, "MIRRORS": urlCred, "PATH": urlCred}},
		{name: "session values override kept host ones", host: []string{"VAULT_ADDR=https://vault.corp", "LANG=C"}, loaded: l,
			opts: EnvOptions{Keep: []string{"VAULT_*"}}, want: session},
		{name: "extra overrides host and session", host: []string{"HTTPS_PROXY=http://proxy:3128", "PATH=/bin"}, loaded: l,
			opts: EnvOptions{Keep: []string{"HTTPS_PROXY"}, Extra: map[string]string{"HTTPS_PROXY": "http://127.0.0.1:9", "VAULT_ADDR": "http://127.0.0.1:9"}},
			want: sortedUnion([]string{"HTTPS_PROXY=http://127.0.0.1:9", "PATH=/bin", "VAULT_ADDR=http://127.0.0.1:9"}, slices.DeleteFunc(slices.Clone(session), func(s string) bool { return strings.HasPrefix(s, "VAULT_ADDR=") }))},
		{name: "no session", host: []string{"A=1", "PATH=/bin", "AWS_PROFILE=x"}, want: []string{"PATH=/bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, refused := BuildEnv(tt.host, tt.loaded, tt.opts)
			if !slices.Equal(got, tt.want) {
				t.Errorf("BuildEnv:\ngot  %q\nwant %q", got, tt.want)
			}
			gotRefused := map[string]string{}
			for _, r := range refused {
				gotRefused[r.Name] = r.Reason
				if strings.Contains(r.Reason, "pw") || strings.Contains(r.Reason, "ghp_") || strings.Contains(r.Reason, "npm_x") {
					t.Errorf("reason %q holds the value", r.Reason)
				}
			}
			if len(gotRefused) != len(tt.refused) {
				t.Errorf("refused %q, want %q", gotRefused, tt.refused)
			}
			for k, want := range tt.refused {
				if !strings.Contains(gotRefused[k], want) {
					t.Errorf("%s refused with %q, want %q", k, gotRefused[k], want)
				}
			}
		})
	}
}

// TestBuildEnvKeepsOut names, one by one, host variables that must not
// reach the agent unless kept: the old deny-list let each of the first
// ones through.
func TestBuildEnvKeepsOut(t *testing.T) {
	for _, name := range []string{
		"DBUS_SESSION_BUS_ADDRESS", "XDG_RUNTIME_DIR", "SSH_AGENT_PID", "GNOME_KEYRING_CONTROL",
		"GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT", "GIT_CONFIG_KEY_0", "GIT_CONFIG_VALUE_0",
		"VSCODE_IPC_HOOK_CLI", "NVIM", "NVIM_LISTEN_ADDRESS", "KITTY_LISTEN_ON", "TMUX", "DISPLAY", "WAYLAND_DISPLAY",
		"npm_config_//registry.npmjs.org/:_authToken", "npm_config_registry", "DEPLOY_SIGNING_SEED", "DATABASE_URL",
		"HTTPS_PROXY", "OLDPWD", "TOKENIZERS_PARALLELISM",
		// And what the deny-list already caught.
		"FOO_SECRET", "AWS_ACCESS_KEY_ID", "AWS_REGION", "VAULT_TOKEN", "KUBECONFIG", "GITHUB_TOKEN",
		"ANTHROPIC_API_KEY", "SSH_AUTH_SOCK", "MALFORMED",
	} {
		t.Run(name, func(t *testing.T) {
			got, _ := BuildEnv(hostEnv, nil, EnvOptions{})
			for _, kv := range got {
				if k, _, _ := strings.Cut(kv, "="); k == name {
					t.Errorf("%s reached the agent", kv)
				}
			}
		})
	}
}

func TestCheckKeep(t *testing.T) {
	for _, tt := range []struct {
		entry string
		ok    bool
	}{
		{"ANTHROPIC_API_KEY", true}, {"OTEL_*", true}, {"_X", true}, {"A*", true},
		{"*", false}, {"", false}, {"*_TOKEN", false}, {"A=B", false}, {"npm_config_//x/:_authToken", false}, {"A**", false}, {"1A", false},
	} {
		if err := CheckKeep(tt.entry); (err == nil) != tt.ok {
			t.Errorf("CheckKeep(%q) = %v, want ok %v", tt.entry, err, tt.ok)
		}
	}
}

// sortedUnion merges NAME=VALUE lists sorted by name; of equal names the
// first listed stays.
func sortedUnion(lists ...[]string) []string {
	var out []string
	for _, l := range lists {
		out = append(out, l...)
	}
	slices.SortStableFunc(out, func(a, b string) int {
		ka, _, _ := strings.Cut(a, "=")
		kb, _, _ := strings.Cut(b, "=")
		return strings.Compare(ka, kb)
	})
	return slices.CompactFunc(out, func(a, b string) bool {
		ka, _, _ := strings.Cut(a, "=")
		kb, _, _ := strings.Cut(b, "=")
		return ka == kb
	})
}

func TestCheckMemoryFS(t *testing.T) {
	shm := shmDir(t)
	disk := t.TempDir()
	tests := []struct {
		name, path string
		want       []string
	}{
		{"tmpfs", shm, nil},
		{"missing below tmpfs", filepath.Join(shm, "a", "b"), nil},
		{"disk", disk, []string{disk + " is on ext4 (0xef53), not tmpfs or ramfs", "must never touch disk", "broker.runtime_dir", "/dev/shm"}},
		{"missing below disk", filepath.Join(disk, "x", "sessions"), []string{"x/sessions is on ext4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMemoryFS(tt.path)
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted a disk")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestCheckReadOnlyWritable(t *testing.T) {
	w, _ := newWriter(t)
	dir, err := w.Create(testMeta("s-rw"), nil, map[string]secret.Value{"A": secret.New("1")})
	if err != nil {
		t.Fatal(err)
	}
	// On the host the dir is 0500 but either root (who may write anyway)
	// or the owner (who may chmod) runs this: both are refused.
	err = CheckReadOnly(dir)
	if !errors.Is(err, ErrWritable) || !strings.Contains(err.Error(), "--allow-writable") {
		t.Errorf("got %v, want ErrWritable", err)
	}
	if err := CheckReadOnly(filepath.Join(dir, "missing")); err == nil || errors.Is(err, ErrWritable) {
		t.Errorf("missing dir: %v", err)
	}
}
