package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2EAuditVerifyAndTail: the daemon's audit log verifies; tail shows a
// session's records; an edited record makes verify fail naming the line.
func TestE2EAuditVerifyAndTail(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.serve(t)
	js := e.startJSON(t, "--role", "agent-readonly")
	e.mustCLI(t, "session", "end", js.ID)
	e.mustCLI(t, "session", "start", "--role", "agent-readonly")

	v := e.mustCLI(t, "audit", "verify")
	if !strings.Contains(v.stdout, "chain intact") || !strings.Contains(v.stdout, "head ") {
		t.Fatalf("verify output: %s", v)
	}
	tail := e.mustCLI(t, "audit", "tail", "--session", js.ID, "-n", "0")
	for _, ev := range []string{"session.start", "lease.mint", "lease.revoke", "session.end"} {
		if !strings.Contains(tail.stdout, ev) {
			t.Errorf("tail --session lacks %s:\n%s", ev, tail.stdout)
		}
	}
	if n := strings.Count(strings.TrimSpace(tail.stdout), "\n") + 1; strings.Contains(tail.stdout, "session.refused") || n < 4 {
		t.Errorf("tail --session shows %d lines or others' records:\n%s", n, tail.stdout)
	}

	// Edit one record in a copy: verify must fail at the next line.
	log := filepath.Join(e.stateDir, "audit.log")
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) < 4 {
		t.Fatalf("only %d audit records", len(lines))
	}
	lines[1] = bytes.Replace(lines[1], []byte(`"event":"`), []byte(`"event":"x`), 1)
	bad := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(bad, append(bytes.Join(lines, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.cli(t, "audit", "verify", "--file", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "line 3") || !strings.Contains(r.stderr, "edited") {
		t.Fatalf("verify of an edited log: %s; want exit 1 naming line 3 and an edit", r)
	}
}
