package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeDocker is a `docker` that logs its calls. `run` sleeps like an agent
// that ignores SIGTERM (or exits with $FAKE_EXIT); `kill` is accepted and
// ignored; `rm --force` kills the `run` process; `container inspect`
// reports no such container once removed. The real engine is exercised by
// the end-to-end tests; this one pins the escalation order.
const fakeDocker = `#!/bin/sh
echo "$*" >> "$FAKE_DIR/log"
case "$1" in
run) [ -n "$FAKE_EXIT" ] && exit "$FAKE_EXIT"; echo $$ > "$FAKE_DIR/pid"; trap '' TERM; exec sleep 30 ;;
kill) exit 0 ;;
rm) [ -e "$FAKE_DIR/pid" ] && kill -9 "$(cat "$FAKE_DIR/pid")" 2>/dev/null; touch "$FAKE_DIR/removed"; exit 0 ;;
container) if [ -e "$FAKE_DIR/removed" ]; then echo "Error: No such container: x" >&2; exit 1; fi; echo abc ;;
esac
`

func withFakeDocker(t *testing.T, exit string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "docker"), []byte(fakeDocker), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	t.Setenv("FAKE_DIR", dir)
	t.Setenv("FAKE_EXIT", exit)
	return dir
}

func fakeLog(t *testing.T, dir string) []string {
	b, _ := os.ReadFile(filepath.Join(dir, "log"))
	var out []string
	for l := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if l != "" {
			f := strings.Fields(l)
			out = append(out, strings.Join(f[:min(len(f), 3)], " "))
		}
	}
	return out
}

// TestRunEscalates: a signal is forwarded with `docker kill`; an agent that
// ignores it is removed with `docker rm --force` after the grace period;
// cleanup then confirms the container is gone.
func TestRunEscalates(t *testing.T) {
	dir := withFakeDocker(t, "")
	sigs := make(chan os.Signal, 1)
	done := make(chan struct{})
	var code int
	var err error
	start := time.Now()
	go func() {
		defer close(done)
		code, err = Run(context.Background(), spec(Docker), Options{Signals: sigs, Grace: 300 * time.Millisecond})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "pid")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("fake docker run never started")
		}
		time.Sleep(10 * time.Millisecond)
	}
	sigs <- syscall.SIGTERM
	<-done
	if err != nil || code != 128+9 {
		t.Fatalf("Run = %d, %v; want 137 (killed after the grace period)", code, err)
	}
	if took := time.Since(start); took < 300*time.Millisecond {
		t.Errorf("killed after %s, before the grace period", took)
	}
	want := []string{"run --sig-proxy=false --rm", "kill --signal 15", "rm --force credbroker-s-abcdefghijklmnop", "rm --force credbroker-s-abcdefghijklmnop", "container inspect --format"}
	if got := fakeLog(t, dir); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("engine calls:\n%q\nwant:\n%q", got, want)
	}
}

// TestRunExitStatus: the agent's own status comes back, and cleanup still
// makes sure the container is gone.
func TestRunExitStatus(t *testing.T) {
	dir := withFakeDocker(t, "7")
	code, err := Run(context.Background(), spec(Docker), Options{})
	if err != nil || code != 7 {
		t.Fatalf("Run = %d, %v; want 7", code, err)
	}
	want := []string{"run --sig-proxy=false --rm", "rm --force credbroker-s-abcdefghijklmnop", "container inspect --format"}
	if got := fakeLog(t, dir); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("engine calls:\n%q\nwant:\n%q", got, want)
	}
}

// TestRunSignalFirst: a signal that came before the start means the
// sandbox never starts.
func TestRunSignalFirst(t *testing.T) {
	dir := withFakeDocker(t, "")
	sigs := make(chan os.Signal, 1)
	sigs <- syscall.SIGINT
	code, err := Run(context.Background(), spec(Docker), Options{Signals: sigs})
	if err != nil || code != 128+2 {
		t.Fatalf("Run = %d, %v; want 130", code, err)
	}
	if got := fakeLog(t, dir); len(got) != 0 {
		t.Errorf("the engine was called: %q", got)
	}
}
