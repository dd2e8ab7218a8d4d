package pgtest

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// staleAge is how old a cluster directory without a live server must be
// before it is taken for a leftover rather than one still being set up.
const staleAge = 5 * time.Minute

// removeStale deletes cluster directories that killed test runs left in
// parent. Their servers died with them (see Pdeathsig in startServer), but
// on tmpfs each directory keeps tens of megabytes of memory until removed.
// A directory whose server still runs belongs to another test run and is
// kept.
func removeStale(parent string) {
	dirs, _ := filepath.Glob(filepath.Join(parent, dirPattern+"*"))
	for _, dir := range dirs {
		fi, err := os.Lstat(dir)
		if err != nil || !fi.IsDir() || time.Since(fi.ModTime()) < staleAge {
			continue
		}
		if serverAlive(dir) {
			continue
		}
		_ = os.RemoveAll(dir)
	}
}

// serverAlive reports whether the postmaster named in dir's
// data/postmaster.pid still runs. Permission errors count as alive: the
// process exists.
func serverAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid"))
	if err != nil {
		return false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 {
		return false
	}
	err = syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
