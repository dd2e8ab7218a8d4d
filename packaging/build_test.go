package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// repoRoot is the repository, seen from this package.
const repoRoot = ".."

// built is the result of the one `make package` all tests share.
var built struct {
	once     sync.Once
	dist     string
	deb, rpm string
	out      []byte
	err      error
}

// buildPackages runs `make package` into a temp dir once and returns the
// .deb and the .rpm it wrote. The dir outlives the test that built it (the
// other tests use it too) and is removed at the end of the run.
func buildPackages(t *testing.T) (deb, rpm string) {
	t.Helper()
	built.once.Do(func() {
		dist, err := os.MkdirTemp("", "credbroker-dist-")
		if err != nil {
			built.err = err
			return
		}
		built.dist = dist
		cmd := exec.Command("make", "--no-print-directory", "package", "DIST="+dist)
		cmd.Dir = repoRoot
		built.out, built.err = cmd.CombinedOutput()
		if built.err != nil {
			return
		}
		built.deb, built.err = onlyMatch(filepath.Join(dist, "credbroker_*.deb"))
		if built.err == nil {
			built.rpm, built.err = onlyMatch(filepath.Join(dist, "credbroker-*.rpm"))
		}
	})
	if built.err != nil {
		t.Fatalf("make package: %v\n%s", built.err, built.out)
	}
	return built.deb, built.rpm
}

// onlyMatch is the one file matching pattern.
func onlyMatch(pattern string) (string, error) {
	m, err := filepath.Glob(pattern)
	if err != nil {
		return "", err
	}
	if len(m) != 1 {
		return "", fmt.Errorf("%s: %d files match %v, want one", pattern, len(m), m)
	}
	return m[0], nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dist != "" {
		os.RemoveAll(built.dist)
	}
	os.Exit(code)
}
