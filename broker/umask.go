package broker

import "syscall"

// umask sets the process umask and returns the old one; used so the socket
// is never briefly world-accessible between bind and chmod.
func umask(m int) int { return syscall.Umask(m) }

func pidSelf() int { return syscall.Getpid() }
