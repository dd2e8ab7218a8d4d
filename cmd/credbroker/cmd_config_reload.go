package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

// configReloadOpts are `config reload`'s flags.
type configReloadOpts struct {
	output string
}

func newConfigReloadCmd(g *globalOpts) *cobra.Command {
	o := &configReloadOpts{}
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Ask the daemon to reload its config file (admins only), as SIGHUP does",
		Long: `Ask the daemon to re-read and validate the config file it was started
with, as SIGHUP (systemctl reload) does: new, changed and removed roles and
broker.admin_uids apply to what starts from then on; live sessions keep
what they were issued. A config that fails validation, or that changes a key
only a restart applies (each is named), is rejected and the running config
stays. Either way the reload is audited (config.reload). Only admins (root,
the daemon's uid, broker.admin_uids) may. This command reads the config too
(for the socket's path), so an invalid file fails here first, with its
errors. Exit 0 when applied, 1 when rejected, 4 when not an admin. With
-o json the result is {"added", "changed", "removed", "admin_uids_changed"}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(o.output); err != nil {
				return err
			}
			return runConfigReload(cmd.Context(), g, o)
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	return cmd
}

func runConfigReload(ctx context.Context, g *globalOpts, o *configReloadOpts) error {
	res, err := g.client().ReloadConfig(ctx)
	if err != nil {
		return err
	}
	if o.output == "json" {
		return printJSON(g.out, res)
	}
	fmt.Fprintf(g.out, "config reloaded: %s\n", res)
	return nil
}
