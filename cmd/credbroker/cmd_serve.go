package main

import (
	"context"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/all"
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
are carried on by the next start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd.Context(), g, o)
		},
	}
	cmd.Flags().BoolVar(&o.allowDisk, "allow-disk", false, "TESTS ONLY: allow session dirs on a disk filesystem (secrets would touch disk)")
	return cmd
}

func runServe(ctx context.Context, g *globalOpts, o *serveOpts) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	path, err := configs.Find(g.config)
	if err != nil {
		return err
	}
	cfg, err := configs.Load(path)
	if err != nil {
		return err
	}
	if g.socket != "" {
		cfg.Broker.Socket = g.socket
	}
	if o.allowDisk {
		log.Warn("--allow-disk is set: session dirs may be written to disk; never use this outside tests")
	}
	return broker.Serve(ctx, broker.DaemonOptions{
		Config:    cfg,
		Logger:    log,
		AllowDisk: o.allowDisk,
		Hooks:     failpoints(),
		Now:       testClock(),
		BuildProviders: func(ctx context.Context, cfg *configs.Config, j providers.Journal, log *slog.Logger) (*providers.Registry, error) {
			return all.Build(ctx, cfg, j, log)
		},
	})
}
