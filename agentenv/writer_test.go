package agentenv

import (
	"errors"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/internal/syncbuf"
)

// nobody is the uid session files are given to when the tests run as root.
const nobody = 65534

// tree describes every entry below dir: relative path → mode and owner.
type entry struct {
	mode fs.FileMode
	uid  int
}

func tree(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = entry{mode: fi.Mode() & (fs.ModeType | fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky), uid: int(fi.Sys().(*syscall.Stat_t).Uid)}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// wantTree is the exact layout Create must produce for testFiles.
func wantTree(uid int) map[string]entry {
	d := entry{fs.ModeDir | 0o500, uid}
	f := entry{0o400, uid}
	return map[string]entry{
		".": d, "session.json": f, "env": f,
		"vault": d, "vault/token": f, "vault/secrets": d, "vault/secrets/db.json": f,
		"aws": d, "aws/config": f, "aws/credentials.json": f,
		"kube": d, "kube/config": f, "kube/token": f,
	}
}

func checkTree(t *testing.T, dir string, want map[string]entry) {
	t.Helper()
	got := tree(t, dir)
	for _, k := range slices.Sorted(maps.Keys(want)) {
		if got[k] != want[k] {
			t.Errorf("%s: got mode %v uid %d, want mode %v uid %d", k, got[k].mode, got[k].uid, want[k].mode, want[k].uid)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected entry %s", k)
		}
	}
}

func TestCreateLayout(t *testing.T) {
	w, _ := newWriter(t)
	m := testMeta("s-layout")
	dir, err := w.Create(m, testFiles(), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if dir != filepath.Join(w.Root, "s-layout") || w.Dir("s-layout") != dir {
		t.Errorf("dir = %s, Dir = %s", dir, w.Dir("s-layout"))
	}
	checkTree(t, dir, wantTree(os.Geteuid()))
	if fi, err := os.Stat(w.Root); err != nil || fi.Mode().Perm() != 0o711 {
		t.Errorf("root: %v, %v; want mode 0711", fi.Mode(), err)
	}
	for rel, v := range testFiles() {
		got, err := os.ReadFile(filepath.Join(dir, rel))
		if err != nil || string(got) != v.Reveal() {
			t.Errorf("%s: content differs (err %v)", rel, err)
		}
		rv, err := w.ReadFile("s-layout", rel)
		if err != nil || rv.Reveal() != v.Reveal() {
			t.Errorf("ReadFile %s: content differs (err %v)", rel, err)
		}
	}
	if mv, err := w.ReadFile("s-layout", MetaFile); err != nil || !strings.Contains(mv.Reveal(), `"id": "s-layout"`) {
		t.Errorf("ReadFile session.json: %v", err)
	}
	l, err := LoadSession(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	if l.Meta.ID != m.ID || l.Meta.Mount != m.Mount || !l.Meta.ExpiresAt.Equal(m.ExpiresAt) {
		t.Errorf("meta: got %+v", l.Meta)
	}
	wantEnv := map[string]string{
		EnvSessionID: "s-layout", EnvRole: "deploy", EnvExpiresAt: "2026-03-01T13:00:00Z",
	}
	for k, v := range testEnv() {
		wantEnv[k] = v.Reveal()
	}
	if !maps.Equal(l.Env, wantEnv) {
		t.Errorf("env: got %v, want %v", l.Env, wantEnv)
	}
	if ids, _ := w.List(); !slices.Equal(ids, []string{"s-layout"}) {
		t.Errorf("List = %v", ids)
	}
	assertNoTemp(t, w.Root)
}

func assertNoTemp(t *testing.T, root string) {
	t.Helper()
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), tmpPrefix) {
			t.Errorf("temporary entry left behind: %s", p)
		}
		return nil
	})
}

func TestCreateOwnership(t *testing.T) {
	w, _ := newWriter(t)
	m := testMeta("s-owned")
	if os.Geteuid() == 0 {
		m.UID = nobody
		dir, err := w.Create(m, testFiles(), testEnv())
		if err != nil {
			t.Fatal(err)
		}
		checkTree(t, dir, wantTree(nobody))
		return
	}
	m.UID = os.Geteuid() + 1
	_, err := w.Create(m, testFiles(), testEnv())
	if err == nil || !strings.Contains(err.Error(), "needs root or CAP_CHOWN") {
		t.Fatalf("got %v, want a chown refusal", err)
	}
	noSecret(t, err)
	if ids, _ := w.List(); len(ids) != 0 {
		t.Errorf("sessions left after failure: %v", ids)
	}
	assertNoTemp(t, w.Root)
}

func TestCreateRefusesDisk(t *testing.T) {
	root := filepath.Join(t.TempDir(), "sessions")
	w := &Writer{Root: root}
	_, err := w.Create(testMeta("s-disk"), testFiles(), nil)
	if err == nil || !strings.Contains(err.Error(), "not tmpfs or ramfs") {
		t.Fatalf("got %v, want a refusal", err)
	}
	noSecret(t, err)
	if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("root was created on disk: %v", err)
	}

	logs := &syncbuf.Buffer{}
	w = &Writer{Root: root, AllowDisk: true, Logger: slog.New(slog.NewTextHandler(logs, nil))}
	for _, id := range []string{"s-disk", "s-disk2"} {
		if _, err := w.Create(testMeta(id), testFiles(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN msg=\"agentenv: AllowDisk is set"); n != 2 {
		t.Errorf("want one WARN per Create, got %d in:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "for tests only") || strings.Contains(logs.String(), marker) {
		t.Errorf("log: %s", logs)
	}
	for _, id := range []string{"s-disk", "s-disk2"} {
		if err := w.Remove(id); err != nil {
			t.Fatal(err)
		}
	}
}

func TestCreateRejects(t *testing.T) {
	sv := secret.New(marker)
	tests := []struct {
		name  string
		id    string
		files map[string]secret.Value
		env   map[string]secret.Value
		want  string
	}{
		{"empty id", "", nil, nil, "invalid session id"},
		{"dotdot id", "..", nil, nil, "invalid session id"},
		{"slash id", "a/b", nil, nil, "invalid session id"},
		{"dot id", ".tmp-x", nil, nil, "invalid session id"},
		{"long id", strings.Repeat("a", 65), nil, nil, "invalid session id"},
		{"absolute path", "s", map[string]secret.Value{"/etc/passwd": sv}, nil, "must be relative"},
		{"dotdot path", "s", map[string]secret.Value{"../escape": sv}, nil, `"." and ".."`},
		{"inner dotdot", "s", map[string]secret.Value{"vault/../../escape": sv}, nil, `"." and ".."`},
		{"dot path", "s", map[string]secret.Value{"./token": sv}, nil, `"." and ".."`},
		{"empty component", "s", map[string]secret.Value{"vault//token": sv}, nil, "empty path component"},
		{"trailing slash", "s", map[string]secret.Value{"vault/": sv}, nil, "empty path component"},
		{"empty path", "s", map[string]secret.Value{"": sv}, nil, "empty"},
		{"reserved env", "s", map[string]secret.Value{"env": sv}, nil, "reserved"},
		{"reserved meta", "s", map[string]secret.Value{"session.json": sv}, nil, "reserved"},
		{"temp name", "s", map[string]secret.Value{"a/.tmp-x": sv}, nil, "reserved for temporary"},
		{"backslash", "s", map[string]secret.Value{`a\..\b`: sv}, nil, "components must be"},
		{"NUL", "s", map[string]secret.Value{"a\x00b": sv}, nil, "components must be"},
		{"file and dir", "s", map[string]secret.Value{"vault": sv, "vault/token": sv}, nil, "is also a directory"},
		{"bad env name", "s", nil, map[string]secret.Value{"A B": sv}, "env name"},
		{"injecting env name", "s", nil, map[string]secret.Value{"A=1\nB": sv}, "env name"},
		{"reserved env name", "s", nil, map[string]secret.Value{"CREDBROKER_SESSION_DIR": sv}, "reserved for the broker"},
		{"NUL env value", "s", nil, map[string]secret.Value{"A": secret.New(marker + "\x00")}, "NUL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, _ := newWriter(t)
			_, err := w.Create(testMeta(tt.id), tt.files, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			noSecret(t, err)
			if _, err := os.Stat(w.Root); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused Create touched the filesystem")
			}
		})
	}
	w, _ := newWriter(t)
	m := testMeta("s")
	m.ExpiresAt = Meta{}.ExpiresAt
	if _, err := w.Create(m, nil, nil); err == nil || !strings.Contains(err.Error(), "expires_at is required") {
		t.Errorf("zero expiry: got %v", err)
	}
}

func TestCreateExisting(t *testing.T) {
	w, _ := newWriter(t)
	if _, err := w.Create(testMeta("s-1"), testFiles(), nil); err != nil {
		t.Fatal(err)
	}
	_, err := w.Create(testMeta("s-1"), map[string]secret.Value{"other": secret.New("x")}, nil)
	if !errors.Is(err, ErrExists) {
		t.Fatalf("got %v, want ErrExists", err)
	}
	checkTree(t, w.Dir("s-1"), wantTree(os.Geteuid()))
	assertNoTemp(t, w.Root)
}

func TestCreateFollowsNoSymlink(t *testing.T) {
	w, _ := newWriter(t)
	if _, err := w.Create(testMeta("s-first"), nil, nil); err != nil {
		t.Fatal(err)
	}
	victim := shmDir(t)
	if err := os.Symlink(victim, filepath.Join(w.Root, "s-link")); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Create(testMeta("s-link"), testFiles(), nil); !errors.Is(err, ErrExists) {
		t.Errorf("symlink at the session name: got %v, want ErrExists", err)
	}
	if entries, _ := os.ReadDir(victim); len(entries) != 0 {
		t.Errorf("Create wrote through a symlink: %v", entries)
	}
	if _, err := w.ReadFile("s-link", "vault/token"); err == nil {
		t.Error("ReadFile followed a symlinked session dir")
	}
	if err := w.Update("s-link", -1, testFiles(), nil); err == nil {
		t.Error("Update followed a symlinked session dir")
	}

	linkRoot := filepath.Join(shmDir(t), "sessions")
	if err := os.Symlink(w.Root, linkRoot); err != nil {
		t.Fatal(err)
	}
	lw := &Writer{Root: linkRoot}
	if _, err := lw.Create(testMeta("s-2"), nil, nil); err == nil {
		t.Error("Create accepted a Root that is a symlink")
	}
}

func TestCreateRefusesLooseRoot(t *testing.T) {
	w, _ := newWriter(t)
	if err := os.Mkdir(w.Root, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(w.Root, 0o777); err != nil {
		t.Fatal(err)
	}
	_, err := w.Create(testMeta("s-1"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "not writable by group or others") {
		t.Errorf("got %v", err)
	}
}

func TestDir(t *testing.T) {
	w := &Writer{Root: "/run/x/sessions"}
	for id, want := range map[string]string{
		"abc-123": "/run/x/sessions/abc-123",
		"../etc":  "",
		"a/b":     "",
		"":        "",
		".":       "",
	} {
		if got := w.Dir(id); got != want {
			t.Errorf("Dir(%q) = %q, want %q", id, got, want)
		}
	}
}

func TestListCleanTempRemove(t *testing.T) {
	w, _ := newWriter(t)
	if ids, err := w.List(); err != nil || ids != nil {
		t.Errorf("List on a missing root: %v, %v", ids, err)
	}
	m := testMeta("s-b")
	if os.Geteuid() == 0 {
		m.UID = nobody
	}
	for _, id := range []string{"s-b", "s-a"} {
		m.ID = id
		if _, err := w.Create(m, testFiles(), testEnv()); err != nil {
			t.Fatal(err)
		}
	}
	// A crash in the middle of Create leaves a temporary dir behind.
	leftover := filepath.Join(w.Root, tmpPrefix+"s-c-0123")
	if err := os.MkdirAll(filepath.Join(leftover, "vault"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "vault", "token"), []byte(marker), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(leftover, "vault"), 0o500); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.Root, "stray-file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := w.List()
	if err != nil || !slices.Equal(ids, []string{"s-a", "s-b"}) {
		t.Fatalf("List = %v, %v", ids, err)
	}
	if err := w.CleanTemp(); err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, w.Root)

	if err := w.Remove("s-a"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(w.Dir("s-a")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("s-a still there: %v", err)
	}
	if err := w.Remove("s-a"); err != nil {
		t.Errorf("removing a missing session: %v", err)
	}
	if err := w.Remove("../s-b"); !errors.Is(err, ErrInvalidID) {
		t.Errorf("Remove with a crafted id: %v", err)
	}
	if ids, _ := w.List(); !slices.Equal(ids, []string{"s-b"}) {
		t.Errorf("List = %v", ids)
	}
	assertNoTemp(t, w.Root)
}
