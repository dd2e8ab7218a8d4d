package main

import (
	"crypto/rand"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func git(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com", "HOME="+dir)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestE2EGuard: issued tokens planted in a file, in base64, and split
// across JSON lines in a staged change are found, name file, line and
// session, revoke the session and are audited; the pre-commit hook blocks
// the commit; random strings of the same shape are not reported.
func TestE2EGuard(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	e.serve(t)
	repo := t.TempDir()
	if out, err := git(t, repo, "init", "-q"); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}

	// Unrelated strings of the same shape: nothing to report.
	var decoy strings.Builder
	for range 50 {
		decoy.WriteString("VAULT_TOKEN=hvs.CAESI" + rand.Text() + rand.Text() + rand.Text() + "\n")
	}
	if err := os.WriteFile(filepath.Join(repo, "decoy.env"), []byte(decoy.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	r := e.run(t, runOpts{dir: repo}, "guard", "scan", ".")
	if r.code != 0 || !strings.Contains(r.stdout, "no issued credentials found") {
		t.Fatalf("scan of decoys: %s", r)
	}

	// A token in a file, and another in base64.
	a, b := e.startJSON(t, "--role", "agent-readonly"), e.startJSON(t, "--role", "agent-readonly")
	tokA, tokB := e.sessionToken(t, a.Dir), e.sessionToken(t, b.Dir)
	if err := os.WriteFile(filepath.Join(repo, "notes.txt"), []byte("line one\nexport VAULT_TOKEN="+tokA+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo, "blob.txt"), []byte(base64.StdEncoding.EncodeToString([]byte(`{"t":"`+tokB+`"}`))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = e.run(t, runOpts{dir: repo}, "guard", "scan", ".")
	if r.code != exitLeak || !strings.Contains(r.stdout, "notes.txt:2: vault token of session "+a.ID) ||
		!strings.Contains(r.stdout, "blob.txt:1: vault token of session "+b.ID+" (vault, base64)") {
		t.Fatalf("scan with planted tokens: %s; want exit %d naming both", r, exitLeak)
	}
	e.requireTokenRejected(t, tokA)
	e.requireTokenRejected(t, tokB)
	os.Remove(filepath.Join(repo, "notes.txt"))
	os.Remove(filepath.Join(repo, "blob.txt"))

	// A staged change splitting a token across JSON lines; the hook blocks
	// the commit.
	c := e.startJSON(t, "--role", "agent-readonly")
	tokC := e.sessionToken(t, c.Dir)
	half := len(tokC) / 2
	cfg := "{\n  \"name\": \"app\",\n  \"token\": \"" + tokC[:half] + "\" +\n           \"" + tokC[half:] + "\"\n}\n"
	if err := os.WriteFile(filepath.Join(repo, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := git(t, repo, "add", "config.json"); err != nil {
		t.Fatalf("git add: %v %s", err, out)
	}
	h := e.run(t, runOpts{dir: repo}, "guard", "install-hook")
	if h.code != 0 {
		t.Fatalf("install-hook: %s", h)
	}
	r = e.run(t, runOpts{dir: repo}, "guard", "scan", "--staged", "--no-revoke")
	if r.code != exitLeak || !strings.Contains(r.stdout, "config.json:3: vault token of session "+c.ID+" (vault, split)") {
		t.Fatalf("scan --staged: %s", r)
	}
	e.requireTokenValid(t, tokC) // --no-revoke
	out, err := git(t, repo, "commit", "-q", "-m", "add config")
	if err == nil {
		t.Fatalf("the pre-commit hook let a commit with an issued token through:\n%s", out)
	}
	if strings.Contains(out, tokC) {
		t.Fatal("the hook printed the token")
	}
	e.requireTokenRejected(t, tokC) // the hook revokes by default

	audit, err := os.ReadFile(filepath.Join(e.stateDir, "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(audit), `"event":"guard.hit"`); n < 4 {
		t.Errorf("%d guard.hit audit records, want at least 4", n)
	}
	for _, f := range []string{"fingerprints.jsonl", "guard.key"} {
		b, err := os.ReadFile(filepath.Join(e.stateDir, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range []string{tokA, tokB, tokC} {
			if strings.Contains(string(b), tok) {
				t.Fatalf("%s holds an issued token", f)
			}
		}
	}
}
