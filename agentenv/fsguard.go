package agentenv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrWritable is returned (wrapped) by CheckReadOnly.
var ErrWritable = errors.New("session dir is writable")

// fsNames names the filesystem magics people are likely to meet, so the
// error says "ext4" rather than a bare number.
var fsNames = map[uint32]string{
	unix.TMPFS_MAGIC:           "tmpfs",
	unix.RAMFS_MAGIC:           "ramfs",
	unix.EXT4_SUPER_MAGIC:      "ext4",
	unix.XFS_SUPER_MAGIC:       "xfs",
	unix.BTRFS_SUPER_MAGIC:     "btrfs",
	unix.OVERLAYFS_SUPER_MAGIC: "overlayfs",
	unix.NFS_SUPER_MAGIC:       "nfs",
	0x2fc12fc1:                 "zfs",
	unix.F2FS_SUPER_MAGIC:      "f2fs",
	unix.FUSE_SUPER_MAGIC:      "fuse",
	unix.CIFS_SUPER_MAGIC:      "cifs",
	unix.SMB2_SUPER_MAGIC:      "smb2",
	unix.ECRYPTFS_SUPER_MAGIC:  "ecryptfs",
	unix.MSDOS_SUPER_MAGIC:     "vfat",
	unix.EXFAT_SUPER_MAGIC:     "exfat",
	0x5346544e:                 "ntfs",
	unix.SQUASHFS_MAGIC:        "squashfs",
	unix.V9FS_MAGIC:            "9p",
	unix.CEPH_SUPER_MAGIC:      "ceph",
	unix.BCACHEFS_SUPER_MAGIC:  "bcachefs",
	unix.REISERFS_SUPER_MAGIC:  "reiserfs",
	0x61756673:                 "aufs",
}

// CheckMemoryFS returns nil when path (or, if it does not exist yet, its
// nearest existing parent) is on tmpfs or ramfs. Session dirs hold secrets;
// on a disk they would outlive the session in the journal, in snapshots and
// in backups.
func CheckMemoryFS(path string) error {
	p := filepath.Clean(path)
	var st unix.Statfs_t
	for {
		err := unix.Statfs(p, &st)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.ENOENT) || p == filepath.Dir(p) {
			return fmt.Errorf("agentenv: statfs %s: %w", p, err)
		}
		p = filepath.Dir(p)
	}
	magic := uint32(st.Type)
	if magic == unix.TMPFS_MAGIC || magic == unix.RAMFS_MAGIC {
		return nil
	}
	name := fsNames[magic]
	if name == "" {
		name = "an unknown filesystem"
	}
	return fmt.Errorf("agentenv: %s is on %s (%#x), not tmpfs or ramfs: session dirs hold secrets and must never touch disk; set broker.runtime_dir to a tmpfs such as $XDG_RUNTIME_DIR or /dev/shm", path, name, magic)
}

// CheckReadOnly refuses a session dir this process could write to. The exec
// wrapper calls it inside a sandbox, where the dir must be a read-only bind
// mount; a writable dir means the sandbox was set up wrong.
//
// The dir is accepted when its mount is read-only (ST_RDONLY). Otherwise it
// is refused when access(2) with the effective ids grants write, or when the
// process owns it: an owner can chmod u+w, so 0500 alone is not read-only.
func CheckReadOnly(dir string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(dir, &sfs); err != nil {
		return fmt.Errorf("agentenv: statfs %s: %w", dir, err)
	}
	if sfs.Flags&unix.ST_RDONLY != 0 {
		return nil
	}
	euid := os.Geteuid()
	hint := "mount it read-only into the sandbox, or pass --allow-writable when running on the host"
	if err := unix.Faccessat(unix.AT_FDCWD, dir, unix.W_OK, unix.AT_EACCESS); err == nil {
		return fmt.Errorf("agentenv: %s is writable by this process (uid %d): %s: %w", dir, euid, hint, ErrWritable)
	}
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return fmt.Errorf("agentenv: stat %s: %w", dir, err)
	}
	if int(st.Uid) == euid {
		return fmt.Errorf("agentenv: %s is owned by this process's uid %d, which can make it writable: %s: %w", dir, euid, hint, ErrWritable)
	}
	return nil
}
