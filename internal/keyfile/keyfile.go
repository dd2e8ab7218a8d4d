// Package keyfile reads the daemon's private key files (the OIDC signing
// key, the leak guard's key) the way a key must be read: not through a
// symlink, and only when no one but the daemon's user or root could have
// written or read it.
package keyfile

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// ErrUnsafe marks a key file refused for its type, owner or mode.
var ErrUnsafe = errors.New("unsafe key file")

// Read returns the contents of the key file at path. It refuses a symlink
// (O_NOFOLLOW), anything but a regular file, a file owned by anyone but
// this process's effective uid or root, and a file with any group or other
// permission bit. A missing file is an error matching fs.ErrNotExist.
func Read(path string) ([]byte, error) {
	return read(path, true)
}

// ReadAnyOwner is Read without the owner check, for tools run by a user
// other than the daemon's (the leak guard scanner): the key must still be
// a regular file, not a symlink, with no group or other access.
func ReadAnyOwner(path string) ([]byte, error) {
	return read(path, false)
}

func read(path string, checkOwner bool) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: %s is a symlink; key files are not read through symlinks: point the config at the file itself", ErrUnsafe, path)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if err := check(path, &st, checkOwner); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return b, nil
}

func check(path string, st *unix.Stat_t, checkOwner bool) error {
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("%w: %s is not a regular file", ErrUnsafe, path)
	}
	euid := os.Geteuid()
	if checkOwner && int(st.Uid) != euid && st.Uid != 0 {
		return fmt.Errorf("%w: %s is owned by uid %d, not by the daemon's uid %d or root: anyone who owns it can change the key; remove it (a new one is created) or chown %d it",
			ErrUnsafe, path, st.Uid, euid, euid)
	}
	if perm := st.Mode & 0o777; perm&0o077 != 0 {
		return fmt.Errorf("%w: %s is mode %04o, open to group or others: chmod 0600 %s (and replace the key if others may have read it)",
			ErrUnsafe, path, perm, path)
	}
	return nil
}
