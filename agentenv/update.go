package agentenv

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/credbroker/credbroker/internal/secret"
)

// ErrRevoked is returned (wrapped) when a session is marked revoked.
var ErrRevoked = errors.New("session revoked")

// Update refreshes files in an existing session dir. Each file is written
// next to the old one (0400, owned by uid as in Meta.UID) and renamed over
// it, so a read-only bind mount of the dir sees the old or the new content,
// never a partial or missing file. Dirs a new path needs are created 0500.
// If env is non-nil it replaces the provider variables of the env file.
// A session marked revoked is refused with ErrRevoked.
func (w *Writer) Update(sessionID string, uid int, files map[string]secret.Value, env map[string]secret.Value) error {
	if err := ValidID(sessionID); err != nil {
		return err
	}
	if err := checkFiles(slices.Collect(maps.Keys(files))); err != nil {
		return err
	}
	if err := checkEnv(revealEnv(env)); err != nil {
		return err
	}
	defer w.lock(sessionID)()
	sessfd, meta, err := w.openSession(sessionID)
	if err != nil {
		return err
	}
	defer unix.Close(sessfd)
	if meta.Revoked {
		return fmt.Errorf("agentenv: update session %s: %w", sessionID, ErrRevoked)
	}
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		if err := updateFile(sessfd, rel, files[rel].Bytes(), uid); err != nil {
			return fmt.Errorf("agentenv: update session %s: %s: %w", sessionID, rel, err)
		}
	}
	if env != nil {
		if err := replaceAt(sessfd, EnvFile, RenderEnv(sessionEnv(meta, env)), uid); err != nil {
			return fmt.Errorf("agentenv: update session %s: %w", sessionID, err)
		}
	}
	w.log().Info("agentenv: session dir updated", "session", sessionID, "files", len(files), "env", env != nil)
	return nil
}

// MarkRevoked rewrites session.json with revoked=true, keeping its owner,
// so a wrapper starting while the dir is being removed refuses to run.
func (w *Writer) MarkRevoked(sessionID string) error {
	if err := ValidID(sessionID); err != nil {
		return err
	}
	defer w.lock(sessionID)()
	sessfd, _, err := w.openSession(sessionID)
	if err != nil {
		return err
	}
	defer unix.Close(sessfd)
	b, owner, err := readAt(sessfd, MetaFile)
	if err != nil {
		return fmt.Errorf("agentenv: revoke session %s: %w", sessionID, err)
	}
	m, err := ParseMeta(b)
	if err != nil {
		return fmt.Errorf("agentenv: revoke session %s: %w", sessionID, err)
	}
	m.Revoked = true
	if b, err = MarshalMeta(m); err != nil {
		return err
	}
	if err := replaceAt(sessfd, MetaFile, b, owner); err != nil {
		return fmt.Errorf("agentenv: revoke session %s: %w", sessionID, err)
	}
	w.log().Info("agentenv: session marked revoked", "session", sessionID)
	return nil
}

// ReadFile reads back a file of the session dir (a provider's, or env or
// session.json), for example vault/token to renew it after a broker
// restart. It follows no symlink.
func (w *Writer) ReadFile(sessionID, rel string) (secret.Value, error) {
	if err := ValidID(sessionID); err != nil {
		return secret.Value{}, err
	}
	if rel != MetaFile && rel != EnvFile {
		if err := validRel(rel); err != nil {
			return secret.Value{}, err
		}
	}
	sessfd, err := w.openSessionDir(sessionID)
	if err != nil {
		return secret.Value{}, err
	}
	defer unix.Close(sessfd)
	b, _, err := readAt(sessfd, rel)
	if err != nil {
		return secret.Value{}, fmt.Errorf("agentenv: session %s: %w", sessionID, err)
	}
	return secret.FromBytes(b), nil
}

// SessionReader reads files of one session; it satisfies
// providers.FileReader.
type SessionReader struct {
	w  *Writer
	id string
}

// Reader returns a reader for the files of one session.
func (w *Writer) Reader(sessionID string) SessionReader { return SessionReader{w: w, id: sessionID} }

// ReadFile reads rel from the session dir (see Writer.ReadFile).
func (r SessionReader) ReadFile(rel string) (secret.Value, error) { return r.w.ReadFile(r.id, rel) }

// openSessionDir opens Root/<id> without following symlinks.
func (w *Writer) openSessionDir(id string) (int, error) {
	rootfd, err := unix.Open(w.Root, dirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("agentenv: session %s: open root %s: %w", id, w.Root, err)
	}
	defer unix.Close(rootfd)
	fd, err := openDirAt(rootfd, id)
	if err != nil {
		return -1, fmt.Errorf("agentenv: session %s: %w", id, err)
	}
	return fd, nil
}

// openSession opens a session dir and parses its session.json.
func (w *Writer) openSession(id string) (int, Meta, error) {
	fd, err := w.openSessionDir(id)
	if err != nil {
		return -1, Meta{}, err
	}
	b, _, err := readAt(fd, MetaFile)
	if err == nil {
		var m Meta
		if m, err = ParseMeta(b); err == nil {
			return fd, m, nil
		}
	}
	unix.Close(fd)
	return -1, Meta{}, fmt.Errorf("agentenv: session %s: %w", id, err)
}

// updateFile walks to rel's parent, creating missing dirs, and replaces
// the file atomically.
func updateFile(sessfd int, rel string, data []byte, uid int) error {
	parent, name := splitRel(rel)
	cur, err := unix.Dup(sessfd)
	if err != nil {
		return fmt.Errorf("dup: %w", err)
	}
	defer func() { unix.Close(cur) }()
	if parent != "" {
		for _, c := range splitPath(parent) {
			next, err := openOrMkdir(cur, c, uid)
			if err != nil {
				return err
			}
			unix.Close(cur)
			cur = next
		}
	}
	return replaceAt(cur, name, data, uid)
}

// openOrMkdir opens dir name in parent, creating it 0500 (owned by uid)
// if missing. It is created 0700 under a temporary name and renamed into
// place once final, so a reader never sees a half-set-up dir.
func openOrMkdir(parent int, name string, uid int) (int, error) {
	fd, err := openDirAt(parent, name)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	tmp := tmpPrefix + name + "-" + randSuffix()
	err = withWritable(parent, func() error {
		if err := unix.Mkdirat(parent, tmp, 0o700); err != nil {
			return fmt.Errorf("mkdir %s: %w", name, err)
		}
		fd, err = openDirAt(parent, tmp)
		if err == nil {
			err = unix.Fchmod(fd, dirMode)
		}
		if err == nil {
			err = chownFD(fd, uid, "dir "+name)
		}
		if err == nil {
			err = unix.Renameat2(parent, tmp, parent, name, unix.RENAME_NOREPLACE)
		}
		if err != nil {
			if fd >= 0 {
				unix.Close(fd)
			}
			_ = unix.Unlinkat(parent, tmp, unix.AT_REMOVEDIR)
		}
		return err
	})
	if err != nil {
		return -1, err
	}
	return fd, nil
}
