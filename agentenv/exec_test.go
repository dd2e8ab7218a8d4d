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

func TestBuildEnv(t *testing.T) {
	host := []string{
		"PATH=/usr/bin", "HOME=/home/u", "PWD=/home/u/src", "OLDPWD=/", "LANG=C.UTF-8",
		"TOKENIZERS_PARALLELISM=false", "HTTPS_PROXY=http://proxy:3128",
		"AWS_ACCESS_KEY_ID=AKIAHOST", "AWS_SECRET_ACCESS_KEY=host", "AWS_SESSION_TOKEN=host",
		"AWS_PROFILE=admin", "AWS_CONFIG_FILE=/home/u/.aws/config", "AWS_SHARED_CREDENTIALS_FILE=/home/u/.aws/credentials",
		"AWS_WEB_IDENTITY_TOKEN_FILE=/var/run/token", "AWS_ROLE_ARN=arn:aws:iam::1:role/x",
		"AWS_CONTAINER_CREDENTIALS_FULL_URI=http://169.254.170.2/creds", "AWS_REGION=eu-west-1", "aws_profile=lower",
		"VAULT_TOKEN=hvs.host", "VAULT_ADDR=https://vault.corp", "VAULT_NAMESPACE=admin", "VAULT_CACERT=/ca.pem",
		"KUBECONFIG=/home/u/.kube/config", "GOOGLE_APPLICATION_CREDENTIALS=/home/u/gcp.json",
		"AZURE_CLIENT_SECRET=x", "AZURE_CLIENT_ID=x", "ARM_CLIENT_SECRET=x",
		"GITHUB_TOKEN=ghp_x", "GH_TOKEN=ghp_x", "NPM_TOKEN=x", "HF_TOKEN=x", "CI_JOB_TOKEN=x",
		"DB_PASSWORD=x", "PGPASSWORD=x", "MYSQL_PWD=x", "CLIENT_SECRET=x", "STRIPE_SECRET_KEY=x",
		"ANTHROPIC_API_KEY=sk-x", "OPENAI_API_KEY=sk-x", "SSH_AUTH_SOCK=/run/ssh.sock", "DOCKER_HOST=unix:///var/run/docker.sock",
		"NETRC=/home/u/.netrc", "CREDBROKER_SOCKET=/run/credbroker.sock", "CREDBROKER_SESSION_ID=old",
		"MALFORMED",
	}
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
	want := []string{
		"PATH=/usr/bin", "HOME=/home/u", "PWD=/home/u/src", "OLDPWD=/",
		"TOKENIZERS_PARALLELISM=false", "HTTPS_PROXY=http://proxy:3128", "MALFORMED",
		"AWS_CONFIG_FILE=/run/credbroker/session/aws/config",
		"AWS_PROFILE=credbroker",
		"CREDBROKER_SESSION_DIR=/run/credbroker/session",
		"CREDBROKER_SESSION_ID=s-1",
		"KUBECONFIG=/run/credbroker/session/kube/config",
		"LANG=en_US.UTF-8",
		"MIDDLE=x" + SessionDirRef,
		"VAULT_ADDR=http://127.0.0.1:8200",
		"VAULT_TOKEN=hvs.session",
	}
	if got := BuildEnv(host, l, nil); !slices.Equal(got, want) {
		t.Errorf("BuildEnv:\ngot  %q\nwant %q", got, want)
	}

	kept := BuildEnv(host, l, append(slices.Clone(DefaultStrip), "!ANTHROPIC_API_KEY"))
	if !slices.Contains(kept, "ANTHROPIC_API_KEY=sk-x") || slices.Contains(kept, "OPENAI_API_KEY=sk-x") {
		t.Errorf("a ! entry should exempt exactly its names: %q", kept)
	}
	none := BuildEnv([]string{"AWS_PROFILE=admin", "VAULT_ADDR=x"}, l, []string{})
	if !slices.Contains(none, "AWS_PROFILE=credbroker") || slices.Contains(none, "AWS_PROFILE=admin") || slices.Contains(none, "VAULT_ADDR=x") {
		t.Errorf("session values must replace host ones even with no strip list: %q", none)
	}
	if got := BuildEnv([]string{"A=1", "AWS_PROFILE=x"}, nil, nil); !slices.Equal(got, []string{"A=1"}) {
		t.Errorf("nil session: %q", got)
	}
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
