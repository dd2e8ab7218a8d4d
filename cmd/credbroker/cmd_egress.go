package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/egress"
	"github.com/credbroker/credbroker/configs"
)

// egressCheckOpts are the options of `egress check`.
type egressCheckOpts struct {
	role   string
	target string
	output string
}

// egressCheckResult is what `egress check -o json` prints.
type egressCheckResult struct {
	Role    string `json:"role"`
	Target  string `json:"target"`
	Verdict string `json:"decision"`
	egress.Decision
}

func newEgressCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "egress",
		Short: "The sessions' egress gateways",
	}
	o := &egressCheckOpts{}
	check := &cobra.Command{
		Use:   "check --role ROLE URL|HOST:PORT",
		Short: "Would a session of ROLE reach this destination? (from the config, no daemon)",
		Long: `Decide, from the config alone, whether the egress gateway lets a session of
ROLE reach a URL (http://, https://, ssh://...) or HOST:PORT (port 443 when
left out), and print the rule that decided. Names are resolved as the
gateway does (broker.egress.hosts, then DNS), and only when a rule allows
the name.

Exit status: 0 allowed, 4 denied, 7 unknown role, 2 bad arguments.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.role == "" {
				return usagef("--role is required")
			}
			if err := checkOutput(o.output); err != nil {
				return err
			}
			o.target = args[0]
			return runEgressCheck(cmd.Context(), g, o)
		},
	}
	check.Flags().StringVar(&o.role, "role", "", "the role whose egress rules apply")
	check.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(check)
	return cmd
}

func runEgressCheck(ctx context.Context, g *globalOpts, o *egressCheckOpts) error {
	host, port, err := parseEgressTarget(o.target)
	if err != nil {
		return usageError{err}
	}
	path, err := configs.Find(g.config)
	if err != nil {
		return err
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	if _, ok := cfg.Roles[o.role]; !ok {
		return fmt.Errorf("%w %q: known roles are %s", broker.ErrUnknownRole, o.role, strings.Join(cfg.RoleNames(), ", "))
	}
	p, err := egress.NewPolicy(cfg, o.role, &egress.Resolver{Hosts: cfg.EgressHosts()})
	if err != nil {
		return err
	}
	d := egress.Decision{Host: host, Port: port,
		Reason: fmt.Sprintf("role %s has no egress block: its sandbox has no network", o.role),
		Fix:    fmt.Sprintf("add roles.%s.egress.allow: [%q]", o.role, net.JoinHostPort(host, strconv.Itoa(port)))}
	if p != nil {
		d = p.Check(ctx, host, port)
	}
	res := egressCheckResult{Role: o.role, Target: d.Target(), Verdict: "deny", Decision: d}
	if d.Allowed {
		res.Verdict = "allow"
	}
	if err := printEgressCheck(g.out, o.output, res); err != nil {
		return err
	}
	if !d.Allowed {
		return exitCoder{exitRefused}
	}
	return nil
}

func printEgressCheck(w io.Writer, output string, r egressCheckResult) error {
	if output == "json" {
		return printJSON(w, r)
	}
	if r.Allowed {
		addrs := make([]string, len(r.Addrs))
		for i, a := range r.Addrs {
			addrs[i] = a.String()
		}
		_, err := fmt.Fprintf(w, "allow %s (%s) by %s\n", r.Target, strings.Join(addrs, ", "), r.Rule)
		return err
	}
	msg := "deny " + r.Target + ": " + r.Reason
	if r.Rule != "" {
		msg += " (by " + r.Rule + ")"
	}
	if r.Fix != "" {
		msg += "; " + r.Fix
	}
	_, err := fmt.Fprintln(w, msg)
	return err
}

// parseEgressTarget reads a URL or HOST[:PORT] (443 when left out).
func parseEgressTarget(s string) (string, int, error) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Hostname() == "" {
			return "", 0, fmt.Errorf("%q is not a URL", s)
		}
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443", "ssh": "22", "git": "9418", "ws": "80", "wss": "443"}[u.Scheme]
		}
		if port == "" {
			return "", 0, fmt.Errorf("%q: give the port, e.g. %s:PORT", s, u.Hostname())
		}
		n, err := strconv.Atoi(port)
		return u.Hostname(), n, err
	}
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return a.String(), configs.DefaultEgressPort, nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return s, configs.DefaultEgressPort, nil
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return host, n, nil
}

// printEgress lists the sessions' egress connection counts (status).
func printEgress(w io.Writer, ss []broker.SessionInfo) {
	var with []broker.SessionInfo
	for _, s := range ss {
		if s.Egress != nil {
			with = append(with, s)
		}
	}
	if len(with) == 0 {
		return
	}
	fmt.Fprintf(w, "\negress gateways (%d):\n", len(with))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SESSION\tALLOWED\tDENIED\tOPEN\tSOCKET")
	for _, s := range with {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", s.ID, s.Egress.Allowed, s.Egress.Denied, s.Egress.Open, s.EgressSocket)
	}
	tw.Flush()
}
