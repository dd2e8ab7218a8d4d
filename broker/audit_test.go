package broker

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeAudit(t *testing.T, n int) (string, [][]byte) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.log")
	for round := 0; round < 2; round++ { // reopening continues the chain
		a, err := OpenAudit(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n / 2 {
			if err := a.Record(Event{Event: EvSessionStart, Session: "s-" + string(rune('a'+i)), Reason: "r"}); err != nil {
				t.Fatal(err)
			}
		}
		a.Close()
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("audit log mode %v, want 0600", fi.Mode().Perm())
	}
	return path, bytes.SplitAfter(bytes.TrimRight(b, "\n"), []byte("\n"))
}

func TestAuditChainVerifies(t *testing.T) {
	path, lines := writeAudit(t, 10)
	b, _ := os.ReadFile(path)
	res, err := VerifyAudit(bytes.NewReader(b), "")
	if err != nil || res.Records != 10 || len(lines) != 10 {
		t.Fatalf("verify = %+v, %v over %d lines; want 10 records", res, err, len(lines))
	}
	if _, err := VerifyAudit(bytes.NewReader(b), res.Head); err != nil {
		t.Fatalf("verify against its own head: %v", err)
	}
}

func TestAuditTamperingDetected(t *testing.T) {
	_, lines := writeAudit(t, 10)
	join := func(ls [][]byte) []byte {
		var out []byte
		for _, l := range ls {
			l = bytes.TrimRight(l, "\n")
			out = append(append(out, l...), '\n')
		}
		return out
	}
	clone := func() [][]byte {
		c := make([][]byte, len(lines))
		copy(c, lines)
		return c
	}
	edited := clone()
	edited[3] = bytes.Replace(edited[3], []byte(`"reason":"r"`), []byte(`"reason":"x"`), 1)
	deleted := append(clone()[:4], clone()[5:]...)
	swapped := clone()
	swapped[6], swapped[7] = swapped[7], swapped[6]
	cases := []struct {
		name     string
		data     []byte
		line     int
		contains string
	}{
		{"edited record", join(edited), 5, "was edited"},
		{"deleted record", join(deleted), 5, "records deleted"},
		{"reordered records", join(swapped), 7, "seq jumps"},
		{"garbage line", append(join(clone()), []byte("not json\n")...), 11, "not a JSON record"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyAudit(bytes.NewReader(tc.data), "")
			var ce *ChainError
			if !errors.As(err, &ce) || ce.Line != tc.line || !strings.Contains(ce.Why, tc.contains) {
				t.Fatalf("verify = %v; want a break at line %d saying %q", err, tc.line, tc.contains)
			}
		})
	}
	// The last record has no successor: only an anchored head catches it.
	full := join(clone())
	res, _ := VerifyAudit(bytes.NewReader(full), "")
	truncated := join(clone()[:9])
	if _, err := VerifyAudit(bytes.NewReader(truncated), ""); err != nil {
		t.Fatalf("a truncated log without anchor should verify (documented limit): %v", err)
	}
	if _, err := VerifyAudit(bytes.NewReader(truncated), res.Head); err == nil {
		t.Fatal("truncation not detected against the anchored head")
	}
}

func readFile(p string) ([]byte, error) { return os.ReadFile(p) }
