package broker

import (
	"context"
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

type callerKey struct{}

// peerCred reads the connecting process's uid and pid with SO_PEERCRED.
func peerCred(c net.Conn) (Caller, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Caller{}, fmt.Errorf("not a unix socket connection")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Caller{}, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return Caller{}, err
	}
	if serr != nil {
		return Caller{}, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return Caller{UID: int(cred.Uid), PID: int(cred.Pid)}, nil
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
