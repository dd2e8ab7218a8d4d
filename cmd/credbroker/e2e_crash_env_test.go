package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/providers/vault/vaulttest"
)

// mountTmpfs mounts a tmpfs of size on dir (created if needed) for the
// test. Mounting needs root, as CI runs the tests; a lazy unmount at
// cleanup copes with a daemon still holding files there.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test mounts a small tmpfs to fill it or make it read-only, which needs root; run `make test` as root (CI does)")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
}

// remount changes the options of the tmpfs on dir (ro, rw).
func remount(t *testing.T, dir, opt string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opt, dir).CombinedOutput(); err != nil {
		t.Fatalf("remount %s %s: %v: %s", dir, opt, err, out)
	}
}

// fill writes a file until its filesystem has no space left.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			return
		}
	}
}

// requireClean fails unless the servers and the store agree and exactly
// valid session credentials are live (3 per live agent-all session: a Vault
// token, MinIO credentials, a ServiceAccount).
func (w *crashWorld) requireClean(t *testing.T, what string, valid int) {
	t.Helper()
	c := w.count(t)
	if !c.clean() || c.valid != valid {
		t.Fatalf("%s: want %d valid session credentials and nothing unknown: %s\n%s", what, valid, c, strings.Join(c.details, "\n"))
	}
}

// TestE2ETmpfsFull: the tmpfs of the session dirs is full when a session
// starts. The start fails with a clear error, and what it minted at Vault,
// MinIO and Kubernetes is revoked; once there is space again, starts work.
func TestE2ETmpfsFull(t *testing.T) {
	t.Parallel()
	w := newCrashWorld(t)
	sessions := filepath.Join(w.runtimeDir, "sessions")
	mountTmpfs(t, sessions, "1m")
	if err := os.Chmod(sessions, 0o711); err != nil {
		t.Fatal(err)
	}
	w.serve(t)
	live := w.startJSON(t, "--role", crashRole)
	w.sessionToken(t, live.Dir)
	fill(t, filepath.Join(sessions, ".fill"))

	r := w.cli(t, "session", "start", "--role", crashRole)
	if r.code == 0 || !strings.Contains(r.stderr, "no space left on device") || !strings.Contains(r.stderr, "write session dir") {
		t.Fatalf("want a failed start naming the full session dir: %s", r)
	}
	w.requireClean(t, "after a start on a full tmpfs", 3)
	var failed []broker.SessionInfo
	for _, s := range w.listAll(t) {
		if s.ID != live.ID {
			failed = append(failed, s)
		}
	}
	if len(failed) != 1 || failed[0].State != "ended" || !strings.Contains(failed[0].EndReason, "start failed") {
		t.Fatalf("the failed start should be one ended session: %+v", failed)
	}

	if err := os.Remove(filepath.Join(sessions, ".fill")); err != nil {
		t.Fatal(err)
	}
	again := w.startJSON(t, "--role", crashRole)
	w.sessionToken(t, again.Dir)
	w.requireClean(t, "after a start with space again", 6)
	w.mustCLI(t, "session", "end", live.ID)
	w.mustCLI(t, "session", "end", again.ID)
	w.requireClean(t, "after the end", 0)
}

// TestE2EStateDir: the state dir (lease store and audit log) cannot be
// written. Read-only at start-up, the daemon refuses to start and says why;
// full while it runs, it mints nothing (fails closed), still revokes at the
// servers when a session ends, and records the end once it can write
// again.
func TestE2EStateDir(t *testing.T) {
	t.Parallel()
	t.Run("read-only at start", func(t *testing.T) {
		t.Parallel()
		w := newCrashWorld(t)
		mountTmpfs(t, w.stateDir, "16m")
		w.serve(t)
		live := w.startJSON(t, "--role", crashRole)
		w.sessionToken(t, live.Dir)
		w.stopAll(t) // SIGTERM: the session stays live for the next daemon

		remount(t, w.stateDir, "ro")
		d := w.start(t, "daemon (read-only state dir)", append(w.awsEnv, brokerTokenEnv+"="+vaulttest.RootToken), "serve")
		if code := d.wait(t, 30*time.Second); code == 0 {
			t.Fatalf("serve with a read-only state dir exited 0:\n%s", d.stderr)
		}
		if msg := d.stderr.String(); !strings.Contains(msg, "read-only file system") || !strings.Contains(msg, w.stateDir) {
			t.Fatalf("serve should name the read-only state dir:\n%s", msg)
		}

		remount(t, w.stateDir, "rw")
		w.serve(t)
		w.requireClean(t, "after the refused start", 3)
		w.mustCLI(t, "session", "end", live.ID)
		w.requireClean(t, "after the end", 0)
	})
	t.Run("full while running", func(t *testing.T) {
		t.Parallel()
		w := newCrashWorld(t)
		mountTmpfs(t, w.stateDir, "16m")
		w.serve(t)
		live := w.startJSON(t, "--role", crashRole)
		w.sessionToken(t, live.Dir)
		fill(t, filepath.Join(w.stateDir, "fill"))

		r := w.cli(t, "session", "start", "--role", crashRole)
		// SQLite says "database or disk is full", the audit log "no space
		// left on device", whichever write comes first.
		if r.code == 0 || (!strings.Contains(r.stderr, "disk is full") && !strings.Contains(r.stderr, "no space left on device")) {
			t.Fatalf("want a failed start naming the full disk: %s", r)
		}
		if !strings.Contains(r.stderr, "nothing was minted") && !strings.Contains(r.stderr, "what was minted is revoked") {
			t.Fatalf("the error should say nothing was left minted: %s", r)
		}
		if n := w.liveSessionTokens(t); n != 1 {
			t.Fatalf("Vault holds %d live session tokens, want only the first session's", n)
		}

		// The end cannot be recorded but is carried out at the servers.
		r = w.cli(t, "session", "end", live.ID)
		if r.code != 0 && r.code != exitPending {
			t.Fatalf("session end with a full state dir: %s", r)
		}
		if n := w.liveSessionTokens(t); n != 0 {
			t.Fatalf("after the end Vault holds %d live session tokens", n)
		}
		if len(w.liveSTS()) != 0 {
			t.Fatal("after the end MinIO still accepts the session's credentials")
		}

		if err := os.Remove(filepath.Join(w.stateDir, "fill")); err != nil {
			t.Fatal(err)
		}
		var c crashCount
		if !eventually(30*time.Second, 250*time.Millisecond, func() bool { c = w.count(t); return c.clean() && c.valid == 0 }) {
			t.Fatalf("30 s after space came back: %s\n%s", c, strings.Join(c.details, "\n"))
		}
		if s := w.show(t, live.ID); s.State != "ended" {
			t.Fatalf("session %s is %q once the store is writable again, want ended", live.ID, s.State)
		}
		w.mustCLI(t, "audit", "verify")
	})
}

// TestE2EClockJump: the clock jumps forward past every TTL under a running
// daemon. Every session is ended and every credential revoked at the
// servers within a few ticks, and new sessions start normally afterwards.
func TestE2EClockJump(t *testing.T) {
	t.Parallel()
	w := newCrashWorld(t)
	w.serve(t)
	var ids []string
	for range 3 {
		si := w.startJSON(t, "--role", crashRole)
		w.sessionToken(t, si.Dir)
		ids = append(ids, si.ID)
	}
	w.requireClean(t, "before the jump", 9)

	w.setClock(t, "3h")
	var c crashCount
	if !eventually(30*time.Second, 250*time.Millisecond, func() bool { c = w.count(t); return c.clean() && c.valid == 0 }) {
		t.Fatalf("30 s after the clock jumped 3 h: %s\n%s", c, strings.Join(c.details, "\n"))
	}
	for _, id := range ids {
		if s := w.show(t, id); s.State != "ended" || !strings.Contains(s.EndReason, "ttl expired") {
			t.Fatalf("session %s after the jump: %q (%s), want ended by its ttl", id, s.State, s.EndReason)
		}
	}
	si := w.startJSON(t, "--role", crashRole)
	w.sessionToken(t, si.Dir)
	// Only the broker's loop reads the moved clock; the providers read the
	// wall clock, so the broker finds the new session's AWS credentials
	// past their renewal point and re-mints them on every tick (the new
	// set is valid for a moment before the old one is revoked). Counted
	// between two renewals, the session holds its 3 credentials.
	if !eventually(10*time.Second, 50*time.Millisecond, func() bool { c = w.count(t); return c.clean() && c.valid == 3 }) {
		t.Fatalf("a session started after the jump: want 3 valid session credentials and nothing unknown: %s\n%s", c, strings.Join(c.details, "\n"))
	}
	w.mustCLI(t, "session", "end", si.ID)
	w.requireClean(t, "after the end", 0)
}
