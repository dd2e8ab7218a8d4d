package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/agentenv/forward"
)

// errSessionUnusable marks a session dir exec refuses to use.
var errSessionUnusable = errors.New("session unusable")

type execOpts struct {
	dir           string
	allowWritable bool
	keep          []string
}

func newExecCmd(g *globalOpts) *cobra.Command {
	o := &execOpts{}
	cmd := &cobra.Command{
		Use:   "exec [--dir /run/credbroker] -- CMD ARGS...",
		Short: "Entrypoint wrapper: run CMD with a mounted session's credentials",
		Long: `Run inside the sandbox. Reads the mounted session dir, refuses when it is
missing, writable, expired or revoked, and replaces itself with CMD (execve),
so signals and the exit status pass straight through. Needs no daemon, no
config and no network.

CMD's environment is an allow-list: of the host's variables only PATH, HOME,
USER, LOGNAME, SHELL, PWD, TMPDIR, TERM, COLORTERM, NO_COLOR, FORCE_COLOR,
CLICOLOR, CLICOLOR_FORCE, COLUMNS, LINES, LANG, LANGUAGE, LC_* and TZ pass,
plus those named with --keep-env (a name, or a prefix ending in *); then the
session's variables, which override. A passed variable whose value holds a
URL with credentials (scheme://user:password@) is dropped with a warning.

When the sandbox has the session's egress gateway socket (mounted at
/run/credbroker-egress.sock, or $CREDBROKER_EGRESS_SOCKET), exec first
starts a forwarder on 127.0.0.1 (HTTP/CONNECT on 3128, SOCKS5 on 1080, or
free ports when those are taken) that relays to the gateway, and sets
HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (and the lower-case forms) to it,
removing NO_PROXY. The forwarder ends with CMD.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.ArgsLenAtDash() != 0 || len(args) == 0 {
				return usagef("give the command after --: credbroker exec -- CMD ARGS")
			}
			if err := checkKeep(o.keep); err != nil {
				return err
			}
			return runExec(g, o, args)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dir, "dir", envOr("CREDBROKER_SESSION_DIR", "/run/credbroker"), "mounted session dir")
	f.BoolVar(&o.allowWritable, "allow-writable", false, "accept a writable session dir (on the host, outside a sandbox)")
	f.StringSliceVar(&o.keep, "keep-env", nil, "host variables to pass besides the base set: NAME or PREFIX* (e.g. ANTHROPIC_API_KEY,OTEL_*)")
	return cmd
}

func runExec(g *globalOpts, o *execOpts, argv []string) error {
	loaded, err := agentenv.LoadSession(o.dir, time.Now())
	if err != nil {
		return fmt.Errorf("%w: %v", errSessionUnusable, err)
	}
	if !o.allowWritable {
		if err := agentenv.CheckReadOnly(loaded.Dir); err != nil {
			return fmt.Errorf("%w: %v (mount it read-only, or pass --allow-writable outside a sandbox)", errSessionUnusable, err)
		}
	}
	env := childEnv(g, loaded, o.keep)
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("command %q: %w", argv[0], err)
	}
	// The forwarder's parent-death signal is tied to the thread that
	// starts it: that must be the thread that execs (see StartChild).
	runtime.LockOSThread()
	if env, err = startEgress(g, env); err != nil {
		return err
	}
	if err := syscall.Exec(path, argv, env); err != nil {
		return fmt.Errorf("exec %s: %w", path, err)
	}
	return nil
}

// childEnv is the agent's environment (agentenv.BuildEnv), with a warning
// on stderr for each allowed host variable it refused (name and reason,
// never the value).
func childEnv(g *globalOpts, loaded *agentenv.Loaded, keep []string) []string {
	env, refused := agentenv.BuildEnv(os.Environ(), loaded, agentenv.EnvOptions{Keep: keep})
	for _, r := range refused {
		fmt.Fprintf(g.errOut, "credbroker: warning: not passing %q to the command: %s\n", r.Name, r.Reason)
	}
	return env
}

// checkKeep refuses --keep-env entries that are not names or NAME_PREFIX*.
func checkKeep(keep []string) error {
	for _, k := range keep {
		if err := agentenv.CheckKeep(k); err != nil {
			return usageError{err}
		}
	}
	return nil
}

// startEgress starts the egress forwarder when the sandbox has a gateway
// socket, and returns env with the proxy variables pointing at it.
func startEgress(g *globalOpts, env []string) ([]string, error) {
	sock, ok := agentenv.EgressSocket()
	if !ok {
		return env, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("egress: find credbroker to start the forwarder: %w", err)
	}
	rd, err := forward.StartChild(exe, []string{"egress-forward", "--socket", sock, "--log-level", "warn"}, g.errOut)
	if err != nil {
		return nil, fmt.Errorf("egress: %w (the session's gateway socket is %s)", err, sock)
	}
	if rd.HTTP != forward.DefaultHTTPAddr || rd.SOCKS != forward.DefaultSOCKSAddr {
		fmt.Fprintf(g.errOut, "credbroker: egress proxy ports taken; using HTTP %s and SOCKS5 %s\n", rd.HTTP, rd.SOCKS)
	}
	return agentenv.WithProxy(env, rd.HTTP, rd.SOCKS), nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}
