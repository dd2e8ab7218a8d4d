package broker

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrUntrustedDir marks a socket or runtime dir the daemon refuses: one it
// does not own, or that others may write to. Whoever controls that dir can
// replace the socket with their own and answer the CLI in the daemon's
// place.
var ErrUntrustedDir = errors.New("untrusted directory")

// ensurePrivateDir creates dir with perm if it is missing and then checks
// it with checkPrivateDir; what names it in errors ("socket dir").
func ensurePrivateDir(what, dir string, perm os.FileMode) error {
	if err := os.MkdirAll(dir, perm); err != nil {
		return fmt.Errorf("create %s %s: %w", what, dir, err)
	}
	return checkPrivateDir(what, dir)
}

// checkPrivateDir refuses a dir that is a symlink, is not owned by the
// daemon's uid, or is writable by group or others. 0711 (shared mode) is
// fine: others may reach the socket but not replace it.
func checkPrivateDir(what, dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return fmt.Errorf("check %s: %w", what, err)
	}
	euid := os.Geteuid()
	switch st, _ := fi.Sys().(*syscall.Stat_t); {
	case fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%w: %s %s is a symlink, which others may have planted: remove it, or point the config at the real directory", ErrUntrustedDir, what, dir)
	case !fi.IsDir():
		return fmt.Errorf("%w: %s %s is not a directory: remove it", ErrUntrustedDir, what, dir)
	case st == nil:
		return fmt.Errorf("%w: %s %s: cannot read its owner", ErrUntrustedDir, what, dir)
	case int(st.Uid) != euid:
		return fmt.Errorf("%w: %s %s is owned by uid %d, not by the daemon's uid %d: another user may have created it to serve a fake daemon there; remove it (the daemon creates it) or chown %d and chmod 0700 it",
			ErrUntrustedDir, what, dir, st.Uid, euid, euid)
	case fi.Mode().Perm()&0o022 != 0:
		return fmt.Errorf("%w: %s %s is mode %04o, writable by group or others, who could replace the socket: remove it (the daemon creates it) or chmod 0700 it",
			ErrUntrustedDir, what, dir, fi.Mode().Perm())
	}
	return nil
}
