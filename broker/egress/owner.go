package egress

import (
	"os"
	"syscall"
)

// ownedByMe reports whether fi belongs to the daemon's effective uid.
func ownedByMe(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && int(st.Uid) == os.Geteuid()
}
