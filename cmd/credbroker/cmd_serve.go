package main

import (
	"github.com/spf13/cobra"
)

type serveOpts struct {
	allowDisk bool
}

func newServeCmd(g *globalOpts) *cobra.Command {
	o := &serveOpts{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the broker daemon on its Unix socket",
		Long: `Run the broker daemon. It listens on a Unix socket (mode 0600), checks every
caller's uid with SO_PEERCRED against broker.allowed_uids, mints and revokes
credentials, writes session dirs on tmpfs, and runs the refresher, reaper and
reconciler. SIGINT/SIGTERM stop it gracefully: live sessions stay recorded and
are carried on by the next start. SIGHUP (systemctl reload) reloads the
config file: roles and broker.admin_uids apply to what starts from then on,
live sessions keep what they were issued; a config that fails validation,
or that changes a key only a restart applies (socket, dirs, store, provider
blocks, a role's aws or kube block), is rejected, logged and audited, and
the running config stays (see docs/operations.md, "Reload (SIGHUP)"). The
process is made non-dumpable at start, so other processes of its user
cannot read its memory or environment (its Vault token, a DSN).

Only the daemon links the provider SDKs (Vault, AWS, Kubernetes) and the
store drivers: 'credbroker serve' runs credbroker-daemon from the directory
of the credbroker binary (make build and the packages install both), or
the file $CREDBROKER_DAEMON names. The daemon takes the same flags.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.allowDisk, "allow-disk", false, "TESTS ONLY: allow session dirs on a disk filesystem (secrets would touch disk)")
	return cmd
}
