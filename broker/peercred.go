package broker

import (
	"context"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

type callerKey struct{}

// peerCred reads the connecting process's uid, pid and gid with
// SO_PEERCRED and its supplementary groups with SO_PEERGROUPS: both are the
// credentials the kernel recorded when the peer connected, so nothing is
// looked up by pid afterwards (no race with pid reuse).
func peerCred(c net.Conn) (Caller, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Caller{}, fmt.Errorf("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var (
		cred       *unix.Ucred
		groups     []int
		serr, gerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
		groups, gerr = peerGroups(int(fd))
	}); err != nil {
		return Caller{}, err
	}
	if serr != nil {
		return Caller{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	if gerr != nil {
		return Caller{}, fmt.Errorf("SO_PEERGROUPS: %w", gerr)
	}
	gids := append([]int{int(cred.Gid)}, groups...)
	return Caller{UID: int(cred.Uid), PID: int(cred.Pid), GIDs: gids}, nil
}

// peerGroups reads the peer's supplementary group ids (SO_PEERGROUPS,
// Linux 4.13+). x/sys/unix has no wrapper for it: the kernel fills an
// array of gid_t and, when it is too small, says how large it must be.
func peerGroups(fd int) ([]int, error) {
	buf := make([]uint32, 64)
	for {
		n := uint32(len(buf) * 4)
		_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		if errno == unix.ERANGE && int(n/4) > len(buf) {
			buf = make([]uint32, n/4)
			continue
		}
		if errno != 0 {
			return nil, errno
		}
		out := make([]int, n/4)
		for i := range out {
			out[i] = int(buf[i])
		}
		return out, nil
	}
}

// connContext stores the peer's credentials (or the error) in the
// connection's context, once per connection.
func connContext(ctx context.Context, c net.Conn) context.Context {
	caller, err := peerCred(c)
	if err != nil {
		return context.WithValue(ctx, callerKey{}, err)
	}
	return context.WithValue(ctx, callerKey{}, caller)
}

func callerFrom(ctx context.Context) (Caller, error) {
	switch v := ctx.Value(callerKey{}).(type) {
	case Caller:
		return v, nil
	case error:
		return Caller{}, v
	default:
		return Caller{}, fmt.Errorf("no peer credentials")
	}
}
