package broker

import (
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
)

// ErrUntrustedDaemon means the process serving the socket runs as a uid
// the client does not trust; nothing was sent to it.
var ErrUntrustedDaemon = errors.New("untrusted daemon")

// UntrustedDaemonError is a socket served by a process whose uid is
// neither root nor the expected daemon uid.
type UntrustedDaemonError struct {
	Socket     string
	UID        int  // the serving process's uid (SO_PEERCRED)
	Want       int  // the daemon uid accepted besides root
	Configured bool // Want comes from broker.daemon_uid
}

// Error names the socket, the uid found and the uid expected.
func (e *UntrustedDaemonError) Error() string {
	why := "this user's own uid, as broker.daemon_uid is not set"
	if e.Configured {
		why = "broker.daemon_uid"
	}
	return fmt.Sprintf("refusing the daemon at %s: it runs as uid %d, but only root or uid %d (%s) may serve it; nothing was sent. "+
		"Another user may have put a fake daemon there: check who owns %s, or set broker.daemon_uid: %d if the daemon really runs as that uid",
		e.Socket, e.UID, e.Want, why, e.Socket, e.UID)
}

// Is matches ErrUntrustedDaemon.
func (e *UntrustedDaemonError) Is(target error) bool { return target == ErrUntrustedDaemon }

// checkServer reads the uid of the process serving conn (SO_PEERCRED: the
// uid that called listen) and refuses it unless it is root or want.
func checkServer(conn net.Conn, socket string, want int, configured bool) error {
	srv, err := peerCred(conn)
	if err != nil {
		return fmt.Errorf("identify the daemon at %s: %w", socket, err)
	}
	if srv.UID == 0 || srv.UID == want {
		return nil
	}
	return &UntrustedDaemonError{Socket: socket, UID: srv.UID, Want: want, Configured: configured}
}

// dialError turns a failed dial or request into the error the CLI shows.
func dialError(socket string, err error) error {
	var ue *UntrustedDaemonError
	switch {
	case errors.As(err, &ue):
		return ue
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w at %s: start it with `credbroker serve` (or point --socket/CREDBROKER_SOCKET at the running one)", ErrDaemonNotRunning, socket)
	case errors.Is(err, syscall.EACCES):
		uid := os.Geteuid()
		return fmt.Errorf("%w: uid %d may not connect to the daemon socket %s (permission denied): only the daemon's user and root may, unless the operator adds uid %d to broker.allowed_uids",
			ErrForbidden, uid, socket, uid)
	}
	return fmt.Errorf("talk to the daemon at %s: %w", socket, err)
}
