package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/configs"
)

func newConfigCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Print an example config or check one",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "example",
		Short: "Print a commented example config (roles agent-readonly and agent-dev)",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := g.out.Write(configs.Example())
			return err
		},
	}, &cobra.Command{
		Use:   "check",
		Short: "Load and validate the config; print every problem with file and line",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			path, err := configs.Find(g.config)
			if err != nil {
				return err
			}
			cfg, err := configs.Load(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.out, "%s: ok (roles: %v)\n", path, cfg.RoleNames())
			return nil
		},
	})
	return cmd
}
