package agentenv

import (
	"bytes"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/internal/syncbuf"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// marker is part of every secret the tests use, so any error or log line
// that leaks one is caught.
const marker = "S3CR3T-MARKER"

// shmDir returns a fresh dir on /dev/shm (tmpfs on the test machines).
func shmDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("/dev/shm", "agentenv-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Session dirs are 0500; make them removable by a non-root run.
		_ = filepath.Walk(d, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		if err := os.RemoveAll(d); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return d
}

// newWriter returns a Writer rooted in a fresh tmpfs dir and its log.
func newWriter(t testing.TB) (*Writer, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	w := &Writer{
		Root:   filepath.Join(shmDir(t), "sessions"),
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	t.Cleanup(func() {
		if strings.Contains(logs.String(), marker) {
			t.Errorf("a secret leaked into the log:\n%s", logs.String())
		}
	})
	return w, logs
}

var (
	t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	t1 = t0.Add(time.Hour)
)

func testMeta(id string) Meta {
	return Meta{ID: id, Role: "deploy", CreatedAt: t0, ExpiresAt: t1, Mount: MountHint{Target: "/run/credbroker/session"}, UID: -1}
}

// testFiles is a typical grant: six files in nested dirs.
func testFiles() map[string]secret.Value {
	return map[string]secret.Value{
		"vault/token":           secret.New("hvs." + marker + "-vault"),
		"vault/secrets/db.json": secret.New(`{"password":"` + marker + `-db"}`),
		"aws/config":            secret.New("[profile credbroker]\ncredential_process = cat ${CREDBROKER_SESSION_DIR}/aws/credentials.json\n"),
		"aws/credentials.json":  secret.New(`{"Version":1,"SecretAccessKey":"` + marker + `-aws"}`),
		"kube/config":           secret.New("apiVersion: v1\nkind: Config\n"),
		"kube/token":            secret.New("eyJ" + marker + "-kube"),
	}
}

func testEnv() map[string]secret.Value {
	return map[string]secret.Value{
		"VAULT_ADDR":      secret.New("http://127.0.0.1:8200"),
		"VAULT_TOKEN":     secret.New("hvs." + marker + "-vault"),
		"AWS_CONFIG_FILE": secret.New(SessionDirRef + "/aws/config"),
		"AWS_PROFILE":     secret.New("credbroker"),
		"KUBECONFIG":      secret.New(SessionDirRef + "/kube/config"),
	}
}

// noSecret fails when err's message contains a secret.
func noSecret(t testing.TB, err error) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), marker) {
		t.Errorf("error leaks a secret: %v", err)
	}
}

// golden compares got with testdata/name, rewriting it under -update.
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
		t.Errorf("%s differs from golden file (run go test -update if the change is intended)\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}
