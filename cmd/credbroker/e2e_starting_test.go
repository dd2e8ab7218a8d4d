package main

import (
	"errors"
	"io/fs"
	"os"
	"regexp"
	"testing"
	"time"
)

// TestE2ESessionListedStartingUntilItsDirIsWritten: while a start has
// minted but not yet written its dir (the daemon pauses there), `session
// list` shows the session as starting, in text and JSON, and its dir does
// not exist; once the start returns, the session is active and its dir
// holds its token.
func TestE2ESessionListedStartingUntilItsDirIsWritten(t *testing.T) {
	t.Parallel()
	e := newE2E(t)
	d := e.serve(t, "CREDBROKER_FAILPOINT=before-write-dir", "CREDBROKER_FAILPOINT_SLEEP=3s")
	p := e.start(t, "session start", nil, "session", "start", "--role", "agent-readonly", "--output", "json")
	d.waitStderr(t, "FAILPOINT before-write-dir", time.Minute)
	ss := e.listAll(t)
	if len(ss) != 1 {
		t.Fatalf("sessions listed while one starts: %+v; want one", ss)
	}
	s := requireState(t, ss, ss[0].ID, "starting")
	if _, err := os.Stat(s.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dir of a starting session before it is written: %v; want none", err)
	}
	list := e.mustCLI(t, "session", "list")
	if !regexp.MustCompile(`(?m)^` + s.ID + `\s+agent-readonly\s+starting\s`).MatchString(list.stdout) {
		t.Fatalf("session list does not show %s starting: %s", s.ID, list)
	}
	if code := p.wait(t, time.Minute); code != 0 {
		t.Fatalf("session start exited %d\n%s", code, p.stderr)
	}
	requireState(t, e.listAll(t), s.ID, "active")
	e.sessionToken(t, s.Dir)
}
