package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/internal/syncbuf"
)

// The benchmarks in e2e_bench_*_test.go run the credbroker binary as
// `make build` makes it (no failpoints), next to the baselines they are
// compared with (aws-vault, vault, a bare exec). They measure; they never
// assert timings.

var (
	releaseOnce sync.Once
	releasePath string
	releaseErr  error
)

// releaseBin builds credbroker and credbroker-daemon like `make build`,
// once per test binary, in a dir of their own (serve runs the daemon
// beside the binary), and returns the path of credbroker.
func releaseBin(tb testing.TB) string {
	tb.Helper()
	releaseOnce.Do(func() {
		dir := filepath.Join(filepath.Dir(cbBin), "release")
		if releaseErr = os.MkdirAll(dir, 0o755); releaseErr != nil {
			return
		}
		releasePath = filepath.Join(dir, "credbroker")
		for bin, tags := range map[string]string{releasePath: "", filepath.Join(dir, "credbroker-daemon"): "daemon"} {
			cmd := exec.Command("go", "build", "-trimpath", "-tags", tags, "-ldflags", "-s -w -X main.version=bench", "-o", bin, ".")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				releaseErr = fmt.Errorf("build %s: %v\n%s", bin, err, out)
				return
			}
		}
	})
	if releaseErr != nil {
		tb.Fatal(releaseErr)
	}
	return releasePath
}

// benchDaemon is a `credbroker serve` process with its own tmpfs dir.
type benchDaemon struct {
	dir, config, socket string // dir: on tmpfs; config and runtime dir (socket, session dirs)
	cmd                 *exec.Cmd
	stderr              *syncbuf.Buffer
	done                chan struct{}
}

// startBenchDaemon writes a config with the given providers and roles
// blocks (YAML, top-level keys) and starts the release binary on it.
func startBenchDaemon(tb testing.TB, providersAndRoles string, env ...string) *benchDaemon {
	tb.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "credbroker-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = exec.Command("chmod", "-R", "u+w", dir).Run() // session dirs are 0500
		_ = os.RemoveAll(dir)
	})
	d := &benchDaemon{dir: dir, config: filepath.Join(dir, "config.yaml"), socket: filepath.Join(dir, "run", "broker.sock"),
		stderr: &syncbuf.Buffer{}, done: make(chan struct{})}
	// Session dirs on tmpfs, the SQLite store on the real disk (ext4 here).
	cfg := fmt.Sprintf("broker:\n  socket: %s\n  runtime_dir: %s\n  state_dir: %s\nstore:\n  driver: sqlite\n%s",
		d.socket, filepath.Join(dir, "run"), tb.TempDir(), providersAndRoles)
	if err := os.WriteFile(d.config, []byte(cfg), 0o600); err != nil {
		tb.Fatal(err)
	}
	d.cmd = exec.Command(releaseBin(tb), "--config", d.config, "serve", "--log-level", "warn")
	d.cmd.Env = baseEnv(env...)
	d.cmd.Stderr = d.stderr
	if err := d.cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	tb.Cleanup(d.stop)
	c := broker.NewClient(d.socket)
	deadline := time.Now().Add(30 * time.Second)
	for c.Health(context.Background()) != nil {
		select {
		case <-d.done:
			tb.Fatalf("daemon exited:\n%s", d.stderr)
		default:
		}
		if time.Now().After(deadline) {
			tb.Fatalf("daemon not ready after 30s:\n%s", d.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d
}

func (d *benchDaemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// runQuiet runs a command to completion, its output discarded unless it
// fails.
func runQuiet(tb testing.TB, env []string, argv ...string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Run(); err != nil {
		tb.Fatalf("%s: %v\n%s", filepath.Base(argv[0]), err, out)
	}
}

// runOutput runs a command and returns its stdout.
func runOutput(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	return string(out), err
}
