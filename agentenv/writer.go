package agentenv

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/credbroker/credbroker/internal/secret"
)

// ErrExists is returned (wrapped) by Create when the session dir exists.
var ErrExists = errors.New("session dir already exists")

// Writer creates, refreshes and removes session dirs under Root. Its
// methods are safe for concurrent use. Mutations of one session are
// serialised; those of different sessions run in parallel (revoke --all
// wipes many dirs at once), except CleanTemp, which runs alone.
type Writer struct {
	// Root holds one dir per session, e.g. <runtime_dir>/sessions.
	Root string
	// AllowDisk skips CheckMemoryFS. For tests only: it lets secrets reach
	// a disk.
	AllowDisk bool
	// Logger receives non-secret events; nil discards them.
	Logger *slog.Logger

	mu      sync.RWMutex   // CleanTemp holds it for writing, every other mutation for reading
	stripes [64]sync.Mutex // one session's mutations, by a hash of its id
}

// lock serialises the mutations of session id (and keeps CleanTemp out);
// the returned func unlocks.
func (w *Writer) lock(id string) func() {
	h := fnv.New32a()
	h.Write([]byte(id))
	m := &w.stripes[h.Sum32()%uint32(len(w.stripes))]
	w.mu.RLock()
	m.Lock()
	return func() { m.Unlock(); w.mu.RUnlock() }
}

func (w *Writer) log() *slog.Logger {
	if w.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return w.Logger
}

// Dir returns Root/<sessionID>, or "" when sessionID is not a valid id
// (see ValidID), so a crafted id can never name a path outside Root.
func (w *Writer) Dir(sessionID string) string {
	if ValidID(sessionID) != nil {
		return ""
	}
	return filepath.Join(w.Root, sessionID)
}

// openRoot checks the filesystem, creates Root 0711 if needed and opens it.
// 0711 lets an agent's uid reach its own session dir by path without
// listing the others.
func (w *Writer) openRoot(create bool) (int, error) {
	if w.AllowDisk {
		w.log().Warn("agentenv: AllowDisk is set: session dirs holding secrets may be written to disk; this is for tests only and must never be used in production",
			"root", w.Root)
	} else if err := CheckMemoryFS(w.Root); err != nil {
		return -1, err
	}
	if create {
		if _, err := os.Lstat(w.Root); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(w.Root, 0o711); err != nil {
				return -1, fmt.Errorf("agentenv: create root: %w", err)
			}
			if err := os.Chmod(w.Root, 0o711); err != nil {
				return -1, fmt.Errorf("agentenv: create root: %w", err)
			}
		}
	}
	fd, err := unix.Open(w.Root, dirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("agentenv: open root %s: %w", w.Root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("agentenv: stat root %s: %w", w.Root, err)
	}
	if st.Mode&0o022 != 0 || (int(st.Uid) != os.Geteuid() && st.Uid != 0) {
		unix.Close(fd)
		return -1, fmt.Errorf("agentenv: root %s must be owned by uid %d or root and not writable by group or others (mode %#o, owner %d)",
			w.Root, os.Geteuid(), st.Mode&0o777, st.Uid)
	}
	return fd, nil
}

// Create writes a complete session dir for s and returns its path. The dir
// is built under a temporary name and renamed into place, so readers see
// nothing or everything. Dirs are 0500 and files 0400, owned by s.UID (see
// Meta). It fails with ErrExists if the session dir is already there.
func (w *Writer) Create(s Meta, files map[string]secret.Value, env map[string]secret.Value) (dir string, err error) {
	if err := ValidID(s.ID); err != nil {
		return "", err
	}
	if s.ExpiresAt.IsZero() {
		return "", fmt.Errorf("agentenv: create session %s: expires_at is required", s.ID)
	}
	if err := checkFiles(slices.Collect(maps.Keys(files))); err != nil {
		return "", err
	}
	if err := checkEnv(revealEnv(env)); err != nil {
		return "", err
	}
	meta, err := MarshalMeta(s)
	if err != nil {
		return "", err
	}
	envb := RenderEnv(sessionEnv(s, env))

	defer w.lock(s.ID)()
	rootfd, err := w.openRoot(true)
	if err != nil {
		return "", err
	}
	defer unix.Close(rootfd)

	tmp := tmpPrefix + s.ID + "-" + randSuffix()
	if err := unix.Mkdirat(rootfd, tmp, 0o700); err != nil {
		return "", fmt.Errorf("agentenv: create session %s: mkdir: %w", s.ID, err)
	}
	err = buildTree(rootfd, tmp, s.UID, files, meta, envb)
	if err == nil {
		err = unix.Renameat2(rootfd, tmp, rootfd, s.ID, unix.RENAME_NOREPLACE)
		if errors.Is(err, unix.EEXIST) {
			err = ErrExists
		}
	}
	if err != nil {
		if rerr := removeTree(rootfd, tmp); rerr != nil {
			w.log().Error("agentenv: remove temporary session dir", "session", s.ID, "dir", tmp, "err", rerr)
		}
		return "", fmt.Errorf("agentenv: create session %s: %w", s.ID, err)
	}
	w.log().Info("agentenv: session dir created", "session", s.ID, "role", s.Role, "files", len(files))
	return filepath.Join(w.Root, s.ID), nil
}

// buildTree fills the fresh dir tmp: files first, then session.json and
// env, then every dir is made 0500 and chowned (through its fd, so the
// order does not matter once nothing more is created).
func buildTree(rootfd int, tmp string, uid int, files map[string]secret.Value, meta, envb []byte) error {
	top, err := openDirAt(rootfd, tmp)
	if err != nil {
		return err
	}
	dirs := map[string]int{"": top}
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		parent, name := splitRel(rel)
		fd, err := mkdirs(dirs, parent)
		if err != nil {
			return err
		}
		if err := writeNewAt(fd, name, files[rel].Bytes(), uid); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	if err := writeNewAt(top, MetaFile, meta, uid); err != nil {
		return err
	}
	if err := writeNewAt(top, EnvFile, envb, uid); err != nil {
		return err
	}
	for rel, fd := range dirs {
		if err := unix.Fchmod(fd, dirMode); err != nil {
			return fmt.Errorf("chmod dir %q: %w", rel, err)
		}
		if err := chownFD(fd, uid, "dir "+rel); err != nil {
			return err
		}
	}
	return nil
}

// mkdirs returns an open fd for the relative dir rel, creating it (0700
// until buildTree finishes) and its parents in dirs.
func mkdirs(dirs map[string]int, rel string) (int, error) {
	if fd, ok := dirs[rel]; ok {
		return fd, nil
	}
	parent, name := splitRel(rel)
	pfd, err := mkdirs(dirs, parent)
	if err != nil {
		return -1, err
	}
	if err := unix.Mkdirat(pfd, name, 0o700); err != nil {
		return -1, fmt.Errorf("mkdir %s: %w", rel, err)
	}
	fd, err := openDirAt(pfd, name)
	if err != nil {
		return -1, err
	}
	dirs[rel] = fd
	return fd, nil
}

// splitRel splits "a/b/c" into "a/b" and "c".
func splitRel(rel string) (string, string) {
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return "", rel
	}
	return rel[:i], rel[i+1:]
}
