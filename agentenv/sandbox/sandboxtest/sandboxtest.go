// Package sandboxtest gives tests the real sandbox engines: it checks that
// an engine works on this machine and builds the local sandbox image.
//
// A missing engine fails the test when $CI is set (.ci/run sets it). On a
// developer's machine without one, the test says loudly that it did not
// run and is skipped: the only skip the project allows.
package sandboxtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// NobodyUID is the non-root uid sandbox tests run agents as.
const NobodyUID = 65534

var (
	mu     sync.Mutex
	probed = map[string]error{}
)

// RequireEngine makes sure engine ("docker", "bwrap" or "compose") can run
// sandboxes here; see the package comment for what happens when not.
func RequireEngine(t testing.TB, engine string) {
	t.Helper()
	mu.Lock()
	err, ok := probed[engine]
	if !ok {
		err = probe(engine)
		probed[engine] = err
	}
	mu.Unlock()
	if err == nil {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set, so the %s sandbox tests must run, but %s does not work here: %v (see scripts/install-deps.sh and docs/sandbox.md)", engine, engine, err)
	}
	t.Logf("!!! %s SANDBOX TEST DID NOT RUN: %s does not work on this machine: %v", strings.ToUpper(engine), engine, err)
	t.Skipf("%s unavailable and CI is not set (set CI=true to make this a failure)", engine)
}

func probe(engine string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	run := func(cred *syscall.Credential, name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		if cred != nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	switch engine {
	case "docker":
		return run(nil, "docker", "version", "--format", "{{.Server.Version}}")
	case "compose":
		if err := run(nil, "docker", "version", "--format", "{{.Server.Version}}"); err != nil {
			return err
		}
		_, err := ComposeCommand()
		return err
	case "bwrap":
		args := []string{"--unshare-all", "--unshare-user", "--ro-bind", "/", "/", "true"}
		if err := run(nil, "bwrap", args...); err != nil {
			return err
		}
		if os.Geteuid() == 0 { // as the unprivileged uid the tests use
			return run(&syscall.Credential{Uid: NobodyUID, Gid: NobodyUID, Groups: []uint32{}}, "bwrap", args...)
		}
		return nil
	default:
		return fmt.Errorf("unknown engine %q", engine)
	}
}

// ComposeCommand returns the compose tool's command: docker-compose, or
// docker compose (the plugin).
func ComposeCommand() ([]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if p, err := exec.LookPath("docker-compose"); err == nil {
		if exec.CommandContext(ctx, p, "version").Run() == nil {
			return []string{p}, nil
		}
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}, nil
	}
	return nil, fmt.Errorf("neither docker-compose nor docker compose works")
}

var (
	imageOnce sync.Once
	image     string
	imageErr  error
)

// Image builds the local sandbox image with scripts/build-sandbox-image.sh
// (cached by content) and returns its name. A failure fails the test.
func Image(t testing.TB) string {
	t.Helper()
	imageOnce.Do(func() {
		root, err := repoRoot()
		if err != nil {
			imageErr = err
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(root, "scripts", "build-sandbox-image.sh")).Output()
		if err != nil {
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			imageErr = fmt.Errorf("scripts/build-sandbox-image.sh: %v: %s", err, stderr)
			return
		}
		image = strings.TrimSpace(string(out))
	})
	if imageErr != nil {
		t.Fatal(imageErr)
	}
	return image
}

func repoRoot() (string, error) {
	d, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod above the test's dir")
		}
		d = filepath.Dir(d)
	}
}
