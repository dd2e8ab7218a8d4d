//go:build daemon

package main

import (
	"context"
	"log/slog"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases/storeopen"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/all"
)

// runServe runs the daemon in this process: this is credbroker-daemon,
// the one binary that links the providers and the store drivers.
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
		OpenStore: storeopen.Open,
		BuildProviders: func(ctx context.Context, cfg *configs.Config, j providers.Journal, log *slog.Logger) (*providers.Registry, error) {
			return all.Build(ctx, cfg, j, log)
		},
	})
}
