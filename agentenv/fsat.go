package agentenv

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Everything below Root goes through directory file descriptors opened
// with O_NOFOLLOW, so no path is re-resolved between checks and no symlink
// is ever followed, whatever the sandbox or another user plants.

const (
	dirFlags  = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	newFlags  = unix.O_WRONLY | unix.O_CREAT | unix.O_EXCL | unix.O_NOFOLLOW | unix.O_CLOEXEC
	readFlags = unix.O_RDONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC | unix.O_NONBLOCK

	dirMode  = 0o500
	fileMode = 0o400
	// maxRead caps what ReadFile and LoadSession read: session files are
	// tokens and small configs.
	maxRead = 1 << 20
)

func openDirAt(parent int, name string) (int, error) {
	fd, err := unix.Openat(parent, name, dirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("open dir %s: %w", name, err)
	}
	return fd, nil
}

// randSuffix names temporary entries; crypto/rand so another local user
// cannot predict and pre-create them.
func randSuffix() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// chownFD gives fd to uid when uid >= 0 and is not the broker's own uid.
func chownFD(fd, uid int, what string) error {
	if uid < 0 || uid == os.Geteuid() {
		return nil
	}
	if err := unix.Fchown(fd, uid, -1); err != nil {
		return fmt.Errorf("chown %s to uid %d: %w (giving session files to another user needs root or CAP_CHOWN)", what, uid, err)
	}
	return nil
}

// withWritable runs fn with owner write permission added to the directory
// fd, then restores its mode. Only an owner can chmod, and only an owner
// without CAP_DAC_OVERRIDE needs to: a root broker writing into a dir it
// gave to the agent's uid skips the chmod, so the agent never gets a window
// in which its own dir is writable.
func withWritable(fd int, fn func() error) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat dir: %w", err)
	}
	mode := st.Mode & 0o7777
	if int(st.Uid) != os.Geteuid() || mode&0o200 != 0 {
		return fn()
	}
	if err := unix.Fchmod(fd, mode|0o200); err != nil {
		return fmt.Errorf("chmod dir u+w: %w", err)
	}
	err := fn()
	if rerr := unix.Fchmod(fd, mode); rerr != nil && err == nil {
		err = fmt.Errorf("restore dir mode %#o: %w", mode, rerr)
	}
	return err
}

// writeNewAt creates name in dirfd (it must not exist), writes data and
// sets mode 0400 and owner uid. On error nothing is left behind.
func writeNewAt(dirfd int, name string, data []byte, uid int) error {
	fd, err := unix.Openat(dirfd, name, newFlags, fileMode)
	if err != nil {
		return fmt.Errorf("create %s: %w", name, err)
	}
	f := os.NewFile(uintptr(fd), name)
	_, err = f.Write(data)
	if err == nil {
		// The umask cannot widen 0400, but it could narrow it.
		err = f.Chmod(fileMode)
	}
	if err == nil {
		err = chownFD(fd, uid, name)
	}
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		_ = unix.Unlinkat(dirfd, name, 0)
	}
	return err
}

// replaceAt atomically replaces name in dirfd with data: a new file next to
// it, renamed over it.
func replaceAt(dirfd int, name string, data []byte, uid int) error {
	return withWritable(dirfd, func() error {
		tmp := tmpPrefix + name + "-" + randSuffix()
		if err := writeNewAt(dirfd, tmp, data, uid); err != nil {
			return err
		}
		if err := unix.Renameat(dirfd, tmp, dirfd, name); err != nil {
			_ = unix.Unlinkat(dirfd, tmp, 0)
			return fmt.Errorf("rename over %s: %w", name, err)
		}
		return nil
	})
}

// readAt reads a regular file below dirfd by relative path, following no
// symlink. It returns the file's owner too.
func readAt(dirfd int, rel string) ([]byte, int, error) {
	parts := strings.Split(rel, "/")
	cur := dirfd
	for _, p := range parts[:len(parts)-1] {
		fd, err := openDirAt(cur, p)
		if cur != dirfd {
			unix.Close(cur)
		}
		if err != nil {
			return nil, -1, err
		}
		cur = fd
	}
	if cur != dirfd {
		defer unix.Close(cur)
	}
	name := parts[len(parts)-1]
	fd, err := unix.Openat(cur, name, readFlags, 0)
	if err != nil {
		return nil, -1, fmt.Errorf("open %s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, -1, fmt.Errorf("fstat %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, -1, fmt.Errorf("%s is not a regular file", rel)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxRead+1))
	if err != nil {
		return nil, -1, fmt.Errorf("read %s: %w", rel, err)
	}
	if len(b) > maxRead {
		return nil, -1, fmt.Errorf("%s is larger than %d bytes", rel, maxRead)
	}
	return b, int(st.Uid), nil
}

// removeTree removes name below parentfd and everything in it, following
// no symlink. A missing name is not an error.
func removeTree(parentfd int, name string) error {
	fd, err := unix.Openat(parentfd, name, dirFlags, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil
	case errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP):
		return ignoreMissing(unix.Unlinkat(parentfd, name, 0), name)
	case err != nil:
		return fmt.Errorf("open dir %s: %w", name, err)
	}
	d := os.NewFile(uintptr(fd), name)
	err = withWritable(fd, func() error {
		entries, err := d.ReadDir(-1)
		if err != nil {
			return fmt.Errorf("read dir %s: %w", name, err)
		}
		var errs []error
		for _, e := range entries {
			if e.IsDir() {
				errs = append(errs, removeTree(fd, e.Name()))
			} else {
				errs = append(errs, ignoreMissing(unix.Unlinkat(fd, e.Name(), 0), e.Name()))
			}
		}
		return errors.Join(errs...)
	})
	d.Close()
	if err != nil {
		return err
	}
	return ignoreMissing(unix.Unlinkat(parentfd, name, unix.AT_REMOVEDIR), name)
}

func ignoreMissing(err error, name string) error {
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("remove %s: %w", name, err)
}
