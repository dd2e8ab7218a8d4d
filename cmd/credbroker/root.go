package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
)

// Exit statuses; listed in the root command's help.
const (
	exitOK          = 0
	exitError       = 1
	exitUsage       = 2
	exitNoDaemon    = 3
	exitRefused     = 4
	exitPending     = 5
	exitProvider    = 6
	exitNotFound    = 7
	exitSessionDead = 8
	exitLeak        = 9
)

const exitHelp = `Exit status:
  0  success
  1  error (the message says what and how to fix it)
  2  bad usage: unknown flag, missing argument, malformed value
  3  the daemon is not running (start it with 'credbroker serve')
  4  refused: incident declared, or caller not allowed
  5  revocation incomplete: some leases are pending and retried (see 'credbroker status')
  6  a provider (Vault, ...) failed; nothing was left minted
  7  no such session or role
  8  (exec) the session dir is missing, expired, revoked or writable
  9  (guard scan) credentials the broker issued were found
  With 'exec', 'run' and 'session start -- CMD', the command's own exit status.`

// globalOpts are flags every command shares.
type globalOpts struct {
	socket   string
	config   string
	logLevel string
	out      io.Writer
	errOut   io.Writer
	in       io.Reader
	// args are the command line as given, for serve to hand to the daemon
	// binary unchanged.
	args []string
}

// exitCoder is an error that carries its own exit status (a child's).
type exitCoder struct{ code int }

func (e exitCoder) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// usageError marks flag and argument mistakes.
type usageError struct{ error }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

func run(args []string, in io.Reader, out, errOut io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	g := &globalOpts{out: out, errOut: errOut, in: in, args: args}
	root := newRootCmd(g)
	root.SetArgs(args)
	root.SetIn(in)
	root.SetOut(out)
	root.SetErr(errOut)
	err := root.ExecuteContext(ctx)
	code := exitCode(err)
	if err != nil && code != exitOK {
		var ec exitCoder
		if !errors.As(err, &ec) {
			fmt.Fprintf(errOut, "credbroker: %v\n", err)
		}
	}
	return code
}

// exitCode is the one place that maps errors to exit statuses.
func exitCode(err error) int {
	var ec exitCoder
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ec):
		return ec.code
	case errors.As(err, &ue):
		return exitUsage
	case errors.Is(err, broker.ErrDaemonNotRunning):
		return exitNoDaemon
	case errors.Is(err, broker.ErrIncident), errors.Is(err, broker.ErrForbidden):
		return exitRefused
	case errors.Is(err, broker.ErrPending):
		return exitPending
	case errors.Is(err, broker.ErrProvider):
		return exitProvider
	case errors.Is(err, broker.ErrNotFound), errors.Is(err, broker.ErrUnknownRole):
		return exitNotFound
	case errors.Is(err, broker.ErrBadRequest):
		return exitUsage
	case errors.Is(err, errSessionUnusable):
		return exitSessionDead
	case errors.Is(err, errLeak):
		return exitLeak
	default:
		return exitError
	}
}

func newRootCmd(g *globalOpts) *cobra.Command {
	root := &cobra.Command{
		Use:   "credbroker",
		Short: "Short-lived, scoped credentials for AI coding agents",
		Long: `credbroker keeps long-lived credentials away from AI coding agents. A local
daemon holds the real authority and mints short-lived, minimally scoped
credentials per agent session, delivered as read-only files on tmpfs, and
revokes them when the session ends, expires, or an incident is declared.

` + exitHelp,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.socket, "socket", "", "daemon socket (default: $CREDBROKER_SOCKET, the config's broker.socket, or $XDG_RUNTIME_DIR/credbroker/broker.sock)")
	pf.StringVar(&g.config, "config", "", "config file (default: $CREDBROKER_CONFIG, $XDG_CONFIG_HOME/credbroker/config.yaml, /etc/credbroker/config.yaml)")
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	root.AddCommand(
		newServeCmd(g),
		newSessionCmd(g),
		newRevokeCmd(g),
		newIncidentCmd(g),
		newStatusCmd(g),
		newExecCmd(g),
		newEgressForwardCmd(g),
		newRunCmd(g),
		newSandboxCmd(g),
		newConfigCmd(g),
		newAuditCmd(g),
		newGuardCmd(g),
		newEgressCmd(g),
		newVersionCmd(g),
	)
	return root
}

// logger logs to stderr: text on a terminal, JSON otherwise.
func (g *globalOpts) logger() (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(g.logLevel)); err != nil {
		return nil, usagef("--log-level %q: use debug, info, warn or error", g.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if f, ok := g.errOut.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return slog.New(slog.NewTextHandler(g.errOut, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(g.errOut, opts)), nil
}

func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }

// socketPath resolves the daemon socket for client commands: --socket,
// $CREDBROKER_SOCKET, the config's broker.socket, the default. A config the
// user named explicitly (--config or $CREDBROKER_CONFIG) must load. It also
// returns the config's broker.daemon_uid (nil when unset or no config was
// found): the uid the client accepts as the daemon's besides root.
func (g *globalOpts) socketPath() (string, *int, error) {
	explicit := g.config != "" || os.Getenv(configs.EnvConfig) != ""
	given := g.socket
	if given == "" {
		given = os.Getenv("CREDBROKER_SOCKET")
	}
	path, err := configs.Find(g.config)
	if err != nil {
		switch {
		case explicit:
			return "", nil, err
		case given != "":
			return given, nil, nil
		}
		return configs.DefaultSocketPath(), nil, nil
	}
	cfg, err := configs.Load(path)
	switch {
	case err != nil && given != "" && !explicit:
		return given, nil, nil // a socket given needs no config, as before
	case err != nil:
		return "", nil, err
	case given != "":
		return given, cfg.Broker.DaemonUID, nil
	}
	return cfg.Broker.Socket, cfg.Broker.DaemonUID, nil
}

// client returns a daemon client, or an error client whose calls all fail
// with the reason the socket could not be resolved. The client accepts the
// socket's server only when it runs as root or broker.daemon_uid (unset:
// this user's uid).
func (g *globalOpts) client() *broker.Client {
	p, daemonUID, err := g.socketPath()
	if err != nil {
		return broker.NewFailingClient(err)
	}
	if daemonUID != nil {
		return broker.NewClientForDaemon(p, *daemonUID)
	}
	return broker.NewClient(p)
}
