package agentenv

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Remove deletes a session dir. It first renames the dir to a temporary
// name, so a reader of Root/<id> sees it vanish at once rather than
// emptying file by file. A missing dir is not an error.
func (w *Writer) Remove(sessionID string) error {
	if err := ValidID(sessionID); err != nil {
		return err
	}
	defer w.lock(sessionID)()
	rootfd, err := unix.Open(w.Root, dirFlags, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agentenv: remove session %s: open root: %w", sessionID, err)
	}
	defer unix.Close(rootfd)
	tmp := tmpPrefix + sessionID + "-" + randSuffix()
	err = unix.Renameat2(rootfd, sessionID, rootfd, tmp, unix.RENAME_NOREPLACE)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agentenv: remove session %s: %w", sessionID, err)
	}
	if err := removeTree(rootfd, tmp); err != nil {
		return fmt.Errorf("agentenv: remove session %s: %w", sessionID, err)
	}
	w.log().Info("agentenv: session dir removed", "session", sessionID)
	return nil
}

// List returns the ids of the session dirs under Root, sorted. Temporary
// entries and anything that is not a dir with a valid id are skipped. A
// missing Root means no sessions.
func (w *Writer) List() ([]string, error) {
	entries, err := os.ReadDir(w.Root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agentenv: list sessions: %w", err)
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && ValidID(e.Name()) == nil {
			ids = append(ids, e.Name())
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// CleanTemp removes temporary entries a crash left under Root. The broker
// calls it at start-up.
func (w *Writer) CleanTemp() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	rootfd, err := unix.Open(w.Root, dirFlags, 0)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("agentenv: clean temporary dirs: open root: %w", err)
	}
	defer unix.Close(rootfd)
	entries, err := os.ReadDir(w.Root)
	if err != nil {
		return fmt.Errorf("agentenv: clean temporary dirs: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			w.log().Info("agentenv: removing leftover temporary session dir", "dir", e.Name())
			errs = append(errs, removeTree(rootfd, e.Name()))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agentenv: clean temporary dirs: %w", err)
	}
	return nil
}
