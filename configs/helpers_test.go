package configs

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// marker ends the line an error is expected to point at.
const marker = "#<"

// isolateEnv points every variable the defaults read at t's temp dirs, so
// tests do not depend on the machine.
func isolateEnv(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("HOME", filepath.Join(dir, "home"))
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
	t.Setenv("XDG_STATE_HOME", filepath.Join(dir, "state"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	t.Setenv("VAULT_ADDR", "")
	t.Setenv(EnvConfig, "")
	return dir
}

// writeConfig writes yaml to config.yaml in a temp dir and returns its path.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// markedLine returns the 1-based line of yaml that carries the marker.
func markedLine(t *testing.T, yaml string) int {
	t.Helper()
	for i, l := range strings.Split(yaml, "\n") {
		if strings.Contains(l, marker) {
			return i + 1
		}
	}
	t.Fatalf("no %s marker in:\n%s", marker, yaml)
	return 0
}

// fieldErrors unpacks a joined error into its FieldErrors.
func fieldErrors(t *testing.T, err error) []*FieldError {
	t.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else if err != nil {
		errs = []error{err}
	}
	out := make([]*FieldError, 0, len(errs))
	for _, e := range errs {
		var fe *FieldError
		if !errors.As(e, &fe) {
			t.Fatalf("error %q is %T, not a *FieldError", e, e)
		}
		out = append(out, fe)
	}
	return out
}

// wantOneError loads yaml and checks it fails with exactly one error that
// names the file, the marked line, path and a hint containing hint.
func wantOneError(t *testing.T, yaml, path, msg, hint string) {
	t.Helper()
	file := writeConfig(t, yaml)
	_, err := Load(file)
	fes := fieldErrors(t, err)
	if len(fes) != 1 {
		t.Fatalf("got %d errors, want 1:\n%v", len(fes), err)
	}
	fe, line := fes[0], markedLine(t, yaml)
	text := fe.Error()
	for _, want := range []string{
		file + ":" + strconv.Itoa(line) + ":",
		" " + path + ": ",
		msg,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("error %q does not contain %q", text, want)
		}
	}
	if !strings.Contains(fe.Hint, hint) || !strings.HasSuffix(text, "; "+fe.Hint) {
		t.Errorf("error %q does not end with a hint containing %q", text, hint)
	}
	if fe.Line != line || fe.Path != path {
		t.Errorf("error at line %d path %q, want line %d path %q", fe.Line, fe.Path, line, path)
	}
}
