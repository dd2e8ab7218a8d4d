//go:build !daemon

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// daemonBinary is the name of the binary that runs the daemon.
const daemonBinary = "credbroker-daemon"

// runServe replaces this process with credbroker-daemon, given the same
// arguments: the client binary (also the one mounted into sandboxes) links
// no provider SDK and no store driver, so it starts fast and stays small.
// The process keeps its pid, so signals and supervisors reach the daemon.
func runServe(_ context.Context, g *globalOpts, _ *serveOpts) error {
	path, err := findDaemon()
	if err != nil {
		return err
	}
	argv := append([]string{daemonBinary}, g.args...)
	if err := syscall.Exec(path, argv, os.Environ()); err != nil {
		return fmt.Errorf("serve: run %s: %w", path, err)
	}
	return nil // not reached
}

// findDaemon is $CREDBROKER_DAEMON, else credbroker-daemon beside this
// binary (after following symlinks, so a link in ~/.local/bin works).
func findDaemon() (string, error) {
	if p := os.Getenv("CREDBROKER_DAEMON"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("serve: CREDBROKER_DAEMON=%s: %w", p, err)
		}
		return p, nil
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("serve: find this binary: %w", err)
	}
	if real, err := filepath.EvalSymlinks(self); err == nil {
		self = real
	}
	p := filepath.Join(filepath.Dir(self), daemonBinary)
	if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("serve: %s not found next to %s: install both binaries (make build builds bin/credbroker and bin/%s), or set CREDBROKER_DAEMON to its path",
			daemonBinary, self, daemonBinary)
	} else if err != nil {
		return "", fmt.Errorf("serve: %s: %w", p, err)
	}
	return p, nil
}
