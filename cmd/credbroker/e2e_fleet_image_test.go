package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/credbroker/credbroker/agentenv/sandbox/sandboxtest"
)

// fleetImageRepo names the fleet test images; the tag is a content hash.
const fleetImageRepo = "credbroker-fleet"

// fleetRequireDocker is the sandbox tests' engine check: in CI a missing
// Docker fails the test; elsewhere it says loudly that it did not run.
func fleetRequireDocker(t testing.TB) { sandboxtest.RequireEngine(t, "docker") }

var (
	fleetImageOnce sync.Once
	fleetImageName string
	fleetImageErr  error
)

// fleetImage builds the broker image once per content (the credbroker
// binary under test, busybox, the Dockerfile) and returns its name. A
// rebuilt binary gets a new tag; older tags of the repo are removed.
func fleetImage(t testing.TB) string {
	t.Helper()
	fleetImageOnce.Do(func() { fleetImageName, fleetImageErr = buildFleetImage() })
	if fleetImageErr != nil {
		t.Fatalf("fleet image: %v", fleetImageErr)
	}
	return fleetImageName
}

const fleetDockerfile = `FROM scratch
COPY rootfs/ /
ENV PATH=/bin
ENTRYPOINT ["/bin/credbroker"]
CMD ["serve"]
`

func buildFleetImage() (string, error) {
	const busybox = "/bin/busybox"
	for _, bin := range []string{cbBin, cbDaemon, busybox} {
		if err := fleetCheckStatic(bin); err != nil {
			return "", fmt.Errorf("%w (install Debian's busybox-static with scripts/install-deps.sh; credbroker is built with CGO_ENABLED=0)", err)
		}
	}
	h := sha256.New()
	for _, f := range []string{cbBin, cbDaemon, busybox} {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	h.Write([]byte(fleetDockerfile))
	tag := fleetImageRepo + ":" + hex.EncodeToString(h.Sum(nil))[:16]
	if _, err := fleetDocker("image", "inspect", tag); err == nil {
		return tag, nil
	}
	dir, err := os.MkdirTemp("", "credbroker-fleet-image-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "tmp"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return "", err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return "", err
	}
	for src, dst := range map[string]string{cbBin: "bin/credbroker", cbDaemon: "bin/credbroker-daemon", busybox: "bin/busybox"} {
		if err := fleetCopyFile(src, filepath.Join(root, dst)); err != nil {
			return "", err
		}
	}
	for _, applet := range []string{"sh", "ls", "test", "cat", "sleep", "seq", "wc", "find"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0:root:/tmp:/bin/sh\n"), 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(fleetDockerfile), 0o644); err != nil {
		return "", err
	}
	cmd := exec.Command("docker", "build", "--quiet", "--tag", tag, dir)
	// The legacy builder needs no buildx plugin, and a scratch image with
	// one COPY is all it has to do.
	cmd.Env = append(os.Environ(), "DOCKER_BUILDKIT=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("docker build: %v: %s", err, out)
	}
	// Older builds of the binary are of no use any more.
	if out, err := fleetDocker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", fleetImageRepo); err == nil {
		for _, img := range strings.Fields(out) {
			if img != tag {
				_, _ = fleetDocker("image", "rm", img)
			}
		}
	}
	return tag, nil
}

// fleetCheckStatic fails unless path is a statically linked ELF executable.
func fleetCheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; a FROM scratch image needs a static binary", path)
		}
	}
	return nil
}

func fleetCopyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// fleetDocker runs docker with args and returns its trimmed output.
func fleetDocker(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "docker", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return strings.TrimSpace(stdout.String()), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// fleetMustDocker is fleetDocker that fails the test on error.
func fleetMustDocker(t testing.TB, args ...string) string {
	t.Helper()
	out, err := fleetDocker(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
