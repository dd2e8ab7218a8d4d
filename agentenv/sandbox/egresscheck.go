package sandbox

import (
	"fmt"
	"path/filepath"
)

// CheckConnectable checks that uid:gid may connect to the Unix socket at
// path: write permission on the socket and, when the engine opens the
// mount source as that uid (bubblewrap), search permission on every dir
// above it. Without it the sandbox would start with no way out and the
// agent would see only refused proxy connections.
func CheckConnectable(path string, uid, gid int, parents bool) error {
	if parents {
		for d := filepath.Dir(path); ; d = filepath.Dir(d) {
			if err := permits(d, uid, gid, 1); err != nil {
				return fmt.Errorf("sandbox: %w: uid %d cannot reach the egress socket %s: %v; every dir above it needs search permission for that uid", ErrEngine, uid, path, err)
			}
			if d == filepath.Dir(d) {
				break
			}
		}
	}
	if err := permits(path, uid, gid, 2); err != nil {
		return fmt.Errorf("sandbox: %w: uid %d cannot connect to the egress socket %s: %v", ErrEngine, uid, path, err)
	}
	return nil
}
