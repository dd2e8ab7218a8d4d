package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/agentenv/sandbox"
	"github.com/credbroker/credbroker/broker"
)

type agentRunOpts struct {
	role, ttl string
	sandboxOpts
	uid   int
	grace time.Duration
	argv  []string
}

func newRunCmd(g *globalOpts) *cobra.Command {
	o := &agentRunOpts{}
	cmd := &cobra.Command{
		Use:   "run --role ROLE [--sandbox docker|bwrap] [--image IMG] [--project DIR] [--network none|host|NAME] [--keep-env NAME] -- CMD ARGS...",
		Short: "Run an agent command in a sandbox with a session; end the session when it exits",
		Long: `Start a session, start a sandbox that sees only the project dir (read-write,
at /workspace) and the session dir (read-only, at /run/credbroker), and run
'credbroker exec -- CMD' in it from a static credbroker binary mounted at
/credbroker. The sandbox runs as the session's non-root uid, without
capabilities, with no-new-privileges, a read-only root, a tmpfs /tmp (also
$HOME) and no network interface but loopback unless --network says
otherwise. When the role has egress rules, the session's egress gateway
socket is mounted in and 'credbroker exec' points HTTP_PROXY, HTTPS_PROXY
and ALL_PROXY at it: the gateway is the sandbox's only way out. With
--network host or NAME the sandbox reaches the network directly and the
role's egress rules are not enforced (a warning says so). No host variable
reaches it but those named with --keep-env (NAME, or PREFIX* expanded here);
one whose value is a URL with credentials is left out with a warning.

Everything that can be checked before the session starts is: the flags, the
engine, the image, the binary, and for bwrap that the session's uid can
reach the daemon's session dirs. A failed check mints nothing.

The session ends, revoking every credential, when the sandbox exits for any
reason: the command exits, the container or process is killed, or this
command gets SIGINT/SIGTERM/SIGHUP (forwarded to the agent; the sandbox is
killed --grace later if it is still running). The exit status is the
command's (128+signal when a signal ended it).

Sandboxes: docker (any local image; never pulled) and bwrap (bubblewrap:
the host's /usr read-only; needs unprivileged user namespaces). For Podman
and docker compose, print the arguments with 'credbroker sandbox args'.

The session's uid (--uid) is yours, or 65534 (nobody) when you are root: the
sandbox never runs as root.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.role == "" {
				return usagef("--role is required (see the roles in your config)")
			}
			argv, err := commandAfterDash(cmd, args, "credbroker run --role ROLE -- CMD ARGS")
			if err != nil {
				return err
			}
			o.argv = argv
			if o.ttl != "" {
				if _, err := time.ParseDuration(o.ttl); err != nil {
					return usagef("--ttl %q is not a duration; use a value like 20m or 1h", o.ttl)
				}
			}
			switch sandbox.Engine(o.engine) {
			case sandbox.Docker, sandbox.Bwrap:
			case sandbox.Podman, sandbox.Compose:
				return usagef("--sandbox %s: run supports docker and bwrap; for %s print the arguments with 'credbroker sandbox args --engine %s'", o.engine, o.engine, o.engine)
			default:
				return usagef("--sandbox %q: use docker or bwrap", o.engine)
			}
			if !cmd.Flags().Changed("uid") {
				o.uid = defaultSandboxUID()
			}
			return runRun(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.role, "role", "", "role to start the session for (required)")
	f.StringVar(&o.ttl, "ttl", "", "session lifetime, e.g. 20m (default: the role's ttl)")
	f.StringVar(&o.engine, "sandbox", string(sandbox.Docker), "sandbox engine: docker or bwrap")
	f.IntVar(&o.uid, "uid", 0, "non-root uid the session and the sandbox run as (default: yours; 65534 when you are root)")
	f.DurationVar(&o.grace, "grace", sandbox.DefaultGrace, "time the agent has to exit after a forwarded signal before the sandbox is killed")
	o.addFlags(f)
	return cmd
}

func runRun(ctx context.Context, g *globalOpts, o *agentRunOpts) (err error) {
	log, err := g.logger()
	if err != nil {
		return err
	}
	spec, err := o.spec(g.errOut, o.engine, o.uid, o.argv)
	if err != nil {
		return err
	}
	spec.TTY = sandbox.IsTerminal(g.in, g.out)
	c := g.client()
	if err := preflightRun(ctx, c, spec); err != nil {
		return err
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := ctx.Err(); err != nil {
		return err
	}
	uid := o.uid
	si, err := c.StartSession(context.WithoutCancel(ctx), broker.StartRequest{Role: o.role, TTL: o.ttl, UID: &uid})
	if err != nil {
		return err
	}
	stop := holdSession(ctx, c, si.ID) // our death (even SIGKILL) ends the session too
	defer stop()
	reason := "sandbox exited"
	defer func() {
		if endErr := endSession(ctx, g, c, si.ID, reason); endErr != nil && err == nil {
			err = endErr
		}
	}()
	spec.SessionDir, spec.SessionID, spec.Name = si.Dir, si.ID, "credbroker-"+si.ID
	spec.EgressSocket = si.EgressSocket
	warnEgress(g, spec, si.Role)
	log.Info("sandbox: starting", "session", si.ID, "role", si.Role, "sandbox", o.engine, "project", spec.Project, "network", spec.Network)
	code, err := sandbox.Run(ctx, spec, sandbox.Options{
		Stdin: g.in, Stdout: g.out, Stderr: g.errOut, Signals: sigs, Grace: o.grace, Logger: log,
	})
	if err != nil {
		reason = "sandbox failed: " + err.Error()
		return err
	}
	reason = fmt.Sprintf("sandbox exited with status %d", code)
	if code != 0 {
		return exitCoder{code}
	}
	return nil
}

// probeID stands for the session id before there is one: a valid id, so
// the spec validates as it will with the real one.
const probeID = "s-preflightprobeaa"

// preflightRun runs, before any credential is minted, every check the
// sandbox would otherwise fail after the session started: the spec (first
// on its own, then with the session dir it will have under the daemon's
// sessions dir: a path a container engine's --mount syntax cannot take is
// refused here), the engine (sandbox.Preflight), and for bwrap that the
// session's uid can reach the dir its session dir will be created in.
func preflightRun(ctx context.Context, c *broker.Client, spec sandbox.Spec) error {
	probe := spec
	probe.SessionDir, probe.SessionID, probe.Name = sandbox.SessionMount, probeID, "credbroker-"+probeID
	if err := probe.Validate(); err != nil {
		return usageError{err}
	}
	info, err := c.Info(ctx)
	if err != nil {
		return err
	}
	probe.SessionDir = "" // a daemon that does not say: checked after the start
	if info.SessionsDir != "" {
		probe.SessionDir = filepath.Join(info.SessionsDir, probeID)
		if err := probe.Validate(); err != nil {
			return fmt.Errorf("the daemon's session dirs (%s) cannot be mounted: %w (change broker.runtime_dir)", info.SessionsDir, err)
		}
	}
	return sandbox.Preflight(ctx, probe)
}

// warnEgress says on stderr when the sandbox gets a network of its own,
// around the egress gateway.
func warnEgress(g *globalOpts, s sandbox.Spec, role string) {
	if s.Network == "" || s.Network == "none" {
		return
	}
	if s.EgressSocket != "" {
		of := "the session's role"
		if role != "" {
			of = "role " + role
		}
		how := "the proxy variables still point at the gateway, but nothing forces their use"
		if !s.MountsEgress() {
			how = "its gateway socket is not mounted either: a forwarder on the host's loopback would let any local user send traffic in this session's name"
		}
		fmt.Fprintf(g.errOut, "credbroker: warning: --network %s gives the sandbox a direct route out: the egress rules of %s are not enforced (%s)\n", s.Network, of, how)
		return
	}
	fmt.Fprintf(g.errOut, "credbroker: warning: --network %s gives the sandbox a direct route out: no egress rule is enforced\n", s.Network)
}

// endSession ends a session with a context that outlives ours (we may be
// ending because of a signal) and says so on stderr.
func endSession(ctx context.Context, g *globalOpts, c *broker.Client, id, reason string) error {
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	if _, err := c.EndSession(ectx, id, reason); err != nil {
		fmt.Fprintf(g.errOut, "credbroker: ending session %s: %v\n", id, err)
		return err
	}
	fmt.Fprintf(g.errOut, "credbroker: session %s ended, credentials revoked\n", id)
	return nil
}

// defaultSandboxUID is the caller's uid, or nobody's when the caller is
// root: a sandbox never runs as root.
func defaultSandboxUID() int {
	if u := os.Getuid(); u != 0 {
		return u
	}
	return 65534
}
