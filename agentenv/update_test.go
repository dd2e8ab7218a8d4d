package agentenv

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/credbroker/credbroker/internal/secret"
)

// version renders a file whose every byte says which rewrite produced it,
// so a reader can tell a complete file from a torn one.
func version(i int) string {
	head := fmt.Sprintf("v%04d:", i)
	return head + strings.Repeat(string(rune('a'+i%26)), 8192+i) + ":end"
}

func checkVersion(s string) error {
	var i int
	if _, err := fmt.Sscanf(s, "v%04d:", &i); err != nil {
		return fmt.Errorf("no header in %d bytes", len(s))
	}
	if s != version(i) {
		return fmt.Errorf("torn file: %d bytes claiming version %d", len(s), i)
	}
	return nil
}

func TestUpdateAtomic(t *testing.T) {
	const rewrites = 200
	w, _ := newWriter(t)
	m := testMeta("s-atomic")
	if os.Geteuid() == 0 {
		m.UID = nobody
	}
	files := testFiles()
	files["vault/token"] = secret.New(version(0))
	dir, err := w.Create(m, files, map[string]secret.Value{"V": secret.New(version(0))})
	if err != nil {
		t.Fatal(err)
	}

	var stop atomic.Bool
	var reads atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Go(func() {
		for !stop.Load() {
			b, err := os.ReadFile(filepath.Join(dir, "vault", "token"))
			if err == nil {
				err = checkVersion(string(b))
			}
			if err != nil {
				errs <- fmt.Errorf("vault/token: %w", err)
				return
			}
			reads.Add(1)
		}
	})
	wg.Go(func() {
		for !stop.Load() {
			l, err := LoadSession(dir, t0)
			if err == nil {
				err = checkVersion(l.Env["V"])
			}
			if err != nil {
				errs <- fmt.Errorf("env: %w", err)
				return
			}
		}
	})
	for i := 1; i <= rewrites; i++ {
		v := secret.New(version(i))
		if err := w.Update("s-atomic", m.UID, map[string]secret.Value{"vault/token": v}, map[string]secret.Value{"V": v}); err != nil {
			t.Fatal(err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if reads.Load() == 0 {
		t.Error("the reader never ran")
	}
	got, err := w.ReadFile("s-atomic", "vault/token")
	if err != nil || got.Reveal() != version(rewrites) {
		t.Errorf("final content wrong (err %v)", err)
	}
	checkTree(t, dir, wantTree(ownerFor(m.UID)))
	assertNoTemp(t, w.Root)
	t.Logf("%d reads during %d rewrites", reads.Load(), rewrites)
}

func ownerFor(uid int) int {
	if uid < 0 {
		return os.Geteuid()
	}
	return uid
}

func TestUpdateContent(t *testing.T) {
	w, _ := newWriter(t)
	m := testMeta("s-upd")
	if os.Geteuid() == 0 {
		m.UID = nobody
	}
	dir, err := w.Create(m, testFiles(), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]secret.Value{
		"kube/token":            secret.New("new-" + marker),
		"vault/secrets/s3.json": secret.New(`{"k":"` + marker + `"}`),
		"gcp/deep/er/key.json":  secret.New("{}"),
	}
	env := map[string]secret.Value{"ONLY": secret.New("one")}
	if err := w.Update("s-upd", m.UID, files, env); err != nil {
		t.Fatal(err)
	}
	want := wantTree(ownerFor(m.UID))
	d := entry{fs.ModeDir | 0o500, ownerFor(m.UID)}
	f := entry{0o400, ownerFor(m.UID)}
	maps.Copy(want, map[string]entry{"vault/secrets/s3.json": f, "gcp": d, "gcp/deep": d, "gcp/deep/er": d, "gcp/deep/er/key.json": f})
	checkTree(t, dir, want)
	for rel, v := range files {
		if got, err := w.ReadFile("s-upd", rel); err != nil || got.Reveal() != v.Reveal() {
			t.Errorf("%s: wrong content (err %v)", rel, err)
		}
	}
	if got, _ := w.ReadFile("s-upd", "vault/token"); got.Reveal() != testFiles()["vault/token"].Reveal() {
		t.Error("a file not in the update changed")
	}
	l, err := LoadSession(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	wantEnv := map[string]string{"ONLY": "one", EnvSessionID: "s-upd", EnvRole: "deploy", EnvExpiresAt: "2026-03-01T13:00:00Z"}
	if !maps.Equal(l.Env, wantEnv) {
		t.Errorf("env = %v, want %v", l.Env, wantEnv)
	}

	// A nil env leaves the env file alone.
	if err := w.Update("s-upd", m.UID, files, nil); err != nil {
		t.Fatal(err)
	}
	if l, _ := LoadSession(dir, t0); !maps.Equal(l.Env, wantEnv) {
		t.Errorf("nil env changed the env file: %v", l.Env)
	}
	assertNoTemp(t, w.Root)
}

func TestUpdateRefuses(t *testing.T) {
	w, _ := newWriter(t)
	if _, err := w.Create(testMeta("s-ok"), testFiles(), nil); err != nil {
		t.Fatal(err)
	}
	sv := secret.New(marker)
	tests := []struct {
		name  string
		id    string
		files map[string]secret.Value
		env   map[string]secret.Value
		want  string
	}{
		{"missing session", "s-missing", map[string]secret.Value{"a": sv}, nil, "no such file"},
		{"crafted id", "../s-ok", map[string]secret.Value{"a": sv}, nil, "invalid session id"},
		{"escape", "s-ok", map[string]secret.Value{"../../x": sv}, nil, `"." and ".."`},
		{"absolute", "s-ok", map[string]secret.Value{"/tmp/x": sv}, nil, "must be relative"},
		{"reserved", "s-ok", map[string]secret.Value{"session.json": sv}, nil, "reserved"},
		{"file over dir", "s-ok", map[string]secret.Value{"vault": sv}, nil, "rename over vault"},
		{"dir over file", "s-ok", map[string]secret.Value{"vault/token/x": sv}, nil, "not a directory"},
		{"reserved env", "s-ok", nil, map[string]secret.Value{"CREDBROKER_ROLE": sv}, "reserved for the broker"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := w.Update(tt.id, -1, tt.files, tt.env)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			noSecret(t, err)
		})
	}
	checkTree(t, w.Dir("s-ok"), wantTree(os.Geteuid()))
	assertNoTemp(t, w.Root)
}

func TestUpdateFollowsNoSymlink(t *testing.T) {
	w, _ := newWriter(t)
	dir, err := w.Create(testMeta("s-sym"), testFiles(), nil)
	if err != nil {
		t.Fatal(err)
	}
	victim := shmDir(t)
	// Plant symlinks as a compromised agent owning its dir could.
	for _, p := range []string{dir, filepath.Join(dir, "kube")} {
		if err := os.Chmod(p, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(victim, filepath.Join(dir, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "kube", "token")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(victim, "token"), filepath.Join(dir, "kube", "token")); err != nil {
		t.Fatal(err)
	}
	err = w.Update("s-sym", -1, map[string]secret.Value{"evil/token": secret.New(marker)}, nil)
	if err == nil {
		t.Error("Update followed a symlinked dir")
	}
	noSecret(t, err)
	if _, err := w.ReadFile("s-sym", "kube/token"); err == nil {
		t.Error("ReadFile followed a symlink")
	}
	// Replacing a symlinked file replaces the link itself, not its target.
	if err := w.Update("s-sym", -1, map[string]secret.Value{"kube/token": secret.New(marker)}, nil); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(victim); len(entries) != 0 {
		t.Errorf("wrote through a symlink: %v", entries)
	}
	if fi, err := os.Lstat(filepath.Join(dir, "kube", "token")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("kube/token: %v, %v", fi, err)
	}
}

func TestMarkRevoked(t *testing.T) {
	w, _ := newWriter(t)
	m := testMeta("s-rev")
	if os.Geteuid() == 0 {
		m.UID = nobody
	}
	dir, err := w.Create(m, testFiles(), testEnv())
	if err != nil {
		t.Fatal(err)
	}
	if err := w.MarkRevoked("s-rev"); err != nil {
		t.Fatal(err)
	}
	checkTree(t, dir, wantTree(ownerFor(m.UID)))
	if _, err := LoadSession(dir, t0); !errors.Is(err, ErrRevoked) {
		t.Errorf("LoadSession after MarkRevoked: %v", err)
	}
	if err := w.Update("s-rev", m.UID, testFiles(), nil); !errors.Is(err, ErrRevoked) {
		t.Errorf("Update after MarkRevoked: %v", err)
	}
	if err := w.MarkRevoked("s-gone"); err == nil {
		t.Error("MarkRevoked of a missing session succeeded")
	}
	if err := w.Remove("s-rev"); err != nil {
		t.Fatal(err)
	}
	assertNoTemp(t, w.Root)
}
