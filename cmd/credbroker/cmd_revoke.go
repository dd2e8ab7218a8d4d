package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
)

type revokeOpts struct {
	all    bool
	reason string
	output string
}

func newRevokeCmd(g *globalOpts) *cobra.Command {
	o := &revokeOpts{}
	cmd := &cobra.Command{
		Use:   "revoke (--all --reason TEXT | SESSION_ID)",
		Short: "Revoke one session, or declare an incident and revoke everything",
		Long: `With SESSION_ID: end that session and revoke its leases.

With --all: declare an incident. The lock is persisted first, so no session
starts until 'credbroker incident clear'; every session dir is wiped; each
provider revokes everything it issued in the fewest calls its backend allows
(Vault: the epoch token, which takes every session token and lease with it).
Whatever fails stays pending, is retried with backoff and shown by
'credbroker status'; running revoke --all again retries it now. The exit
status is 0 only when nothing issued is left valid.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.all && len(args) > 0:
				return usagef("give either --all or a SESSION_ID, not both")
			case !o.all && len(args) != 1:
				return usagef("give a SESSION_ID, or --all --reason TEXT for an incident")
			case o.all && strings.TrimSpace(o.reason) == "":
				return usagef("--all needs --reason TEXT (it goes into the audit log)")
			case o.output != "text" && o.output != "json":
				return usagef("--output %q: use text or json", o.output)
			}
			if o.all {
				return runRevokeAll(cmd.Context(), g, o)
			}
			return runRevokeOne(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.all, "all", false, "incident: revoke every credential the broker issued and refuse new sessions")
	f.StringVar(&o.reason, "reason", "", "why (required with --all; recorded in the audit log)")
	f.StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

// runRevokeOne ends one session. With -o json it prints the session as
// the daemon reports it (state and any lease still pending), also when the
// revocation is incomplete.
func runRevokeOne(ctx context.Context, g *globalOpts, o *revokeOpts, id string) error {
	si, err := g.client().EndSession(ctx, id, o.reason)
	if o.output == "json" {
		if err != nil && si.ID == "" {
			return err
		}
		if perr := printJSON(g.out, si); perr != nil {
			return perr
		}
		return err
	}
	if err != nil {
		printLeases(g.errOut, si.Leases)
		return err
	}
	fmt.Fprintf(g.out, "session %s revoked\n", si.ID)
	return nil
}

func runRevokeAll(ctx context.Context, g *globalOpts, o *revokeOpts) error {
	// The notice goes out only once the daemon has admitted the request: a
	// refused caller or an unreachable daemon must not read "declaring".
	var mu sync.Mutex
	stop := func() {}
	var accepted func()
	if o.output == "text" {
		accepted = func() {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintln(g.errOut, "declaring incident and revoking every credential...")
			stop = progress(g.errOut, "revoking")
		}
	}
	rep, err := g.client().RevokeAllNotify(ctx, o.reason, accepted)
	mu.Lock()
	stop()
	mu.Unlock()
	if err != nil && !errors.Is(err, broker.ErrPending) {
		return err
	}
	if o.output == "json" {
		if perr := printJSON(g.out, rep); perr != nil {
			return perr
		}
		return err
	}
	fmt.Fprintf(g.out, "incident declared: %s\n", rep.Reason)
	fmt.Fprintf(g.out, "sessions wiped: %d; servers rejected everything after %s; done in %s\n",
		rep.Sessions, rep.RevokedIn.Round(time.Millisecond), rep.Duration)
	for _, p := range rep.Providers {
		line := fmt.Sprintf("  %-8s %-10s revoked %d in %s", p.Provider, p.Method, p.Revoked, p.RevokedIn.Round(time.Millisecond))
		if p.Pending > 0 {
			line += fmt.Sprintf(", PENDING %d", p.Pending)
		}
		if p.LeftToHosts > 0 {
			line += fmt.Sprintf(", NOT REACHED %d (hosts %s revoke their own)", p.LeftToHosts, hostNames(p.LeftHosts))
		}
		if p.Error != "" {
			line += " (" + oneLine(p.Error) + ")"
		}
		fmt.Fprintln(g.out, line)
	}
	if rep.Complete {
		fmt.Fprintln(g.out, "everything revoked; new sessions are refused until `credbroker incident clear`")
		return nil
	}
	printLeases(g.out, rep.Pending)
	return err
}

// hostNames lists hosts for a message, "-" for a single broker's.
func hostNames(hosts []string) string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = orDash(h)
	}
	return strings.Join(names, ", ")
}

// progress shows elapsed time on a terminal until the returned stop is
// called; elsewhere it prints nothing.
func progress(w io.Writer, what string) func() {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(f) {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				fmt.Fprintf(w, "\r%s... %s\n", what, time.Since(start).Round(time.Millisecond))
				return
			case <-t.C:
				fmt.Fprintf(w, "\r%s... %s", what, time.Since(start).Round(100*time.Millisecond))
			}
		}
	}()
	return func() { close(done); <-finished }
}
