package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globalOpts) *cobra.Command {
	var (
		output   string
		allHosts bool
	)
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Live sessions, pending revocations and the incident state",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			st, err := g.client().StatusWith(cmd.Context(), allHosts)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.out, st)
			}
			if st.Incident != nil {
				fmt.Fprintf(g.out, "INCIDENT declared %s by uid %d: %s\n  new sessions are refused; lift with `credbroker incident clear`\n",
					st.Incident.DeclaredAt.Local().Format(time.DateTime), st.Incident.CallerUID, st.Incident.Reason)
			} else {
				fmt.Fprintln(g.out, "incident: none")
			}
			if allHosts {
				printFleetStatus(g.out, st)
				return nil
			}
			fmt.Fprintf(g.out, "providers: %v\n\nsessions (%d live):\n", st.Providers, len(st.Sessions))
			printSessions(g.out, st.Sessions)
			printEgress(g.out, st.Sessions)
			fmt.Fprintf(g.out, "\npending revocations: %d\n", len(st.Pending))
			printLeases(g.out, st.Pending)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.Flags().BoolVar(&allHosts, "all-hosts", false, "fleet mode: the live sessions and pending revocations of every broker sharing the store")
	return cmd
}

func newIncidentCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "incident",
		Short: "Manage the incident lock",
	}
	var output string
	clear := &cobra.Command{
		Use:   "clear",
		Short: "Lift the incident lock so sessions can start again (admins only)",
		Long: `Lift the incident lock so sessions can start again. Only admins may: root,
the daemon's own uid and broker.admin_uids. Any other caller gets exit 4 and
the lock stays; the refusal is audited. Declaring an incident (revoke --all)
is open to every caller the daemon admits.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output); err != nil {
				return err
			}
			if err := g.client().ClearIncident(cmd.Context()); err != nil {
				return err
			}
			if output == "json" {
				return printJSON(g.out, map[string]bool{"cleared": true})
			}
			fmt.Fprintln(g.out, "incident cleared; sessions may start again")
			return nil
		},
	}
	clear.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json")
	cmd.AddCommand(clear)
	return cmd
}
