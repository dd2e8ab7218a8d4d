package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
)

func newSessionCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Start, list, show and end agent sessions",
	}
	cmd.AddCommand(newSessionStartCmd(g), newSessionListCmd(g), newSessionShowCmd(g), newSessionEndCmd(g))
	return cmd
}

type sessionStartOpts struct {
	role   string
	ttl    string
	uid    int
	output string
	keep   []string
	argv   []string
}

func newSessionStartCmd(g *globalOpts) *cobra.Command {
	o := &sessionStartOpts{}
	cmd := &cobra.Command{
		Use:   "start --role ROLE [--ttl 20m] [--uid UID] [--keep-env NAME,...] [-- CMD ARGS...]",
		Short: "Mint a session's credentials and write its session dir",
		Long: `Start a session: mint every provider the role names (all or nothing), write
the session dir on tmpfs, and print its id and dir.

With '-- CMD ARGS', run CMD with the session's environment and end the
session when CMD exits, whatever the reason; SIGINT/SIGTERM/SIGHUP are passed
to CMD. The exit status is CMD's. As with 'credbroker exec', of the host's
variables only a base set (PATH, HOME, USER, TERM, LANG, LC_*, ...) and those
named with --keep-env reach CMD.

A signal that arrives while the session is being started does not abandon
it: the start is awaited, the session ended and the exit status is 128+signal.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.role == "" {
				return usagef("--role is required (see the roles in your config)")
			}
			if o.output != "text" && o.output != "json" {
				return usagef("--output %q: use text or json", o.output)
			}
			if dash := cmd.ArgsLenAtDash(); dash >= 0 {
				o.argv = args[dash:]
				if dash > 0 {
					return usagef("unexpected arguments %q before --", args[:dash])
				}
			} else if len(args) > 0 {
				return usagef("unexpected arguments %q; put the command after --", args)
			}
			if len(o.keep) > 0 && len(o.argv) == 0 {
				return usagef("--keep-env applies to the command after --: credbroker session start --role ROLE --keep-env NAME -- CMD")
			}
			if err := checkKeep(o.keep); err != nil {
				return err
			}
			if cmd.Flags().Changed("uid") && o.uid < 0 {
				return usagef("--uid %d: must be a uid >= 0", o.uid)
			}
			var uid *int
			if cmd.Flags().Changed("uid") {
				uid = &o.uid
			}
			return runSessionStart(cmd.Context(), g, o, uid)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.role, "role", "", "role to start the session for (required)")
	f.StringVar(&o.ttl, "ttl", "", "session lifetime, e.g. 20m (default: the role's ttl; at most its max_ttl)")
	f.IntVar(&o.uid, "uid", -1, "uid that owns the session dir (default: yours; others need root)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	f.StringSliceVar(&o.keep, "keep-env", nil, "with -- CMD: host variables CMD gets besides the base set: NAME or PREFIX* (e.g. DOCKER_HOST,XDG_RUNTIME_DIR)")
	return cmd
}

func runSessionStart(ctx context.Context, g *globalOpts, o *sessionStartOpts, uid *int) error {
	if o.ttl != "" {
		if _, err := time.ParseDuration(o.ttl); err != nil {
			return usagef("--ttl %q is not a duration; use a value like 20m or 1h", o.ttl)
		}
	}
	if len(o.argv) > 0 {
		// A command that cannot start is known before anything is minted.
		if _, err := exec.LookPath(o.argv[0]); err != nil {
			return fmt.Errorf("command %q: %w (nothing was started)", o.argv[0], err)
		}
	}
	// Catch signals before asking, and do not let them cancel the request:
	// the daemon may finish the start after we stopped listening, leaving a
	// live session nobody ends. An interrupted start is ended instead.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := ctx.Err(); err != nil {
		return err // interrupted before anything was asked
	}
	c := g.client()
	si, err := c.StartSession(context.WithoutCancel(ctx), broker.StartRequest{Role: o.role, TTL: o.ttl, UID: uid})
	if err != nil {
		return err
	}
	if len(o.argv) > 0 {
		return runWithSession(ctx, g, c, si, o.argv, o.keep, sigs)
	}
	select {
	case s := <-sigs:
		return endInterrupted(ctx, g, c, si, s)
	default:
	}
	if o.output == "json" {
		return printJSON(g.out, si)
	}
	fmt.Fprintf(g.out, "session %s started for role %s\n", si.ID, si.Role)
	fmt.Fprintf(g.out, "  dir:     %s\n", si.Dir)
	fmt.Fprintf(g.out, "  expires: %s (in %s)\n", si.ExpiresAt.Local().Format(time.RFC3339), time.Until(si.ExpiresAt).Round(time.Second))
	fmt.Fprintf(g.out, "  mount:   --mount type=bind,src=%s,dst=/run/credbroker,readonly\n", si.Dir)
	fmt.Fprintf(g.out, "  end:     credbroker session end %s\n", si.ID)
	return nil
}

type sessionListOpts struct {
	all      bool
	allHosts bool
	output   string
}

func newSessionListCmd(g *globalOpts) *cobra.Command {
	o := &sessionListOpts{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List live sessions",
		Long: `List live sessions. STATE is starting (its credentials are being minted
and its dir is not ready yet), active (its dir holds its credentials),
ending (revocations pending) or, with --all, ended.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			ss, err := g.client().ListSessionsWith(cmd.Context(), broker.SessionQuery{All: o.all, AllHosts: o.allHosts})
			if err != nil {
				return err
			}
			if o.output == "json" {
				return printJSON(g.out, ss)
			}
			if o.allHosts {
				printFleetSessions(g.out, ss)
				return nil
			}
			printSessions(g.out, ss)
			return nil
		},
	}
	cmd.Flags().BoolVar(&o.all, "all", false, "include ended sessions")
	cmd.Flags().BoolVar(&o.allHosts, "all-hosts", false, "fleet mode: the sessions of every broker sharing the store, with their host")
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newSessionShowCmd(g *globalOpts) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "show SESSION_ID",
		Short: "Show one session and its leases",
		Args:  exactArgs(1, "SESSION_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			si, err := g.client().GetSession(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.out, si)
			}
			printSessions(g.out, []broker.SessionInfo{si})
			printLeases(g.out, si.Leases)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

func newSessionEndCmd(g *globalOpts) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:   "end SESSION_ID",
		Short: "End a session: wipe its dir and revoke every lease",
		Args:  exactArgs(1, "SESSION_ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			si, err := g.client().EndSession(cmd.Context(), args[0], reason)
			if err != nil {
				printLeases(g.errOut, si.Leases)
				return err
			}
			fmt.Fprintf(g.out, "session %s ended; every lease revoked\n", si.ID)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "reason for the audit log")
	return cmd
}

func exactArgs(n int, names string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %s, got %d arguments", names, len(args))
		}
		return nil
	}
}

// checkOutput refuses an --output value other than text or json, rather
// than printing text to a script that asked for something else.
func checkOutput(output string) error {
	if output != "text" && output != "json" {
		return usagef("--output %q: use text or json", output)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printSessions(w io.Writer, ss []broker.SessionInfo) {
	if len(ss) == 0 {
		fmt.Fprintln(w, "no sessions")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tROLE\tSTATE\tUID\tEXPIRES\tLEASES")
	for _, s := range ss {
		exp := s.ExpiresAt.Local().Format(time.DateTime)
		if s.State == "active" {
			exp += " (in " + time.Until(s.ExpiresAt).Round(time.Second).String() + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", s.ID, s.Role, s.State, strconv.Itoa(s.UID), exp, len(s.Leases))
	}
	tw.Flush()
}

func printLeases(w io.Writer, ls []broker.LeaseInfo) {
	if len(ls) == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tSESSION\tSTATE\tEXPIRES\tATTEMPTS\tLAST ERROR")
	for _, l := range ls {
		exp := ""
		if !l.ExpiresAt.IsZero() {
			exp = l.ExpiresAt.Local().Format(time.DateTime)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", l.ID, l.Session, l.State, exp, l.Attempts, oneLine(l.LastError))
	}
	tw.Flush()
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
