package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
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
are carried on by the next start. SIGHUP is logged and otherwise ignored
(reloading the config is not supported yet: restart to apply changes). The
process is made non-dumpable at start, so other processes of its user
cannot read its memory or environment (its Vault token, a DSN).`,
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
	if err := hardenProcess(); err != nil {
		return err
	}
	stopHUP := ignoreHangup(log)
	defer stopHUP()
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
		BuildProviders: func(ctx context.Context, cfg *configs.Config, st leases.Store, log *slog.Logger) (*providers.Registry, error) {
			return all.Build(ctx, cfg, st, log)
		},
	})
}

// hardenProcess makes the daemon non-dumpable: no core dumps, and
// /proc/PID/{environ,mem,maps,...} and ptrace are closed to other
// processes of the same uid. Its environment may hold the broker's Vault
// token or a store DSN, its memory every secret it minted.
func hardenProcess() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("make the daemon non-dumpable (prctl PR_SET_DUMPABLE): %w", err)
	}
	return nil
}

// ignoreHangup keeps SIGHUP (a closed terminal, or an operator expecting a
// reload) from killing the daemon: each one is logged until the returned
// stop is called.
func ignoreHangup(log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				log.Warn("SIGHUP received and ignored: reloading the config is not supported yet; restart the daemon to apply changes")
			}
		}
	})
	return func() {
		signal.Stop(hup)
		close(done)
		wg.Wait()
	}
}
