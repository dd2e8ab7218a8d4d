//go:build daemon

package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/broker/metrics"
	"github.com/credbroker/credbroker/broker/proxy"
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
	if err := hardenProcess(); err != nil {
		return err
	}
	reloads, stopHUP := hangups()
	defer stopHUP()
	path, err := configs.Find(g.config)
	if err != nil {
		return err
	}
	cfg, err := serveConfig(g, path)
	if err != nil {
		return err
	}
	if o.allowDisk {
		log.Warn("--allow-disk is set: session dirs may be written to disk; never use this outside tests")
	}
	return broker.Serve(ctx, broker.DaemonOptions{
		Config:     cfg,
		Logger:     log,
		AllowDisk:  o.allowDisk,
		Hooks:      failpoints(),
		Now:        testClock(),
		EgressDial: egressDial(),
		Metrics:    metrics.New(cfg), // served only when broker.metrics.listen is set
		Reloads:    reloads,
		LoadConfig: func() (*configs.Config, error) { return serveConfig(g, path) },
		OpenStore:  storeopen.Open,
		NewProxy:   newProxy,
		BuildProviders: func(ctx context.Context, cfg *configs.Config, j providers.Journal, log *slog.Logger) (*providers.Registry, error) {
			return all.Build(ctx, cfg, j, log)
		},
	})
}

// newProxy builds proxy delivery (broker/proxy, daemon-only: it links
// the AWS signer).
func newProxy(cfg *configs.Config, onLeak func(broker.ProxyLeak), log *slog.Logger) (broker.OpenProxyFunc, error) {
	d, err := proxy.New(proxy.Options{Config: cfg, Logger: log, OnLeak: func(l proxy.Leak) {
		onLeak(broker.ProxyLeak{Session: l.Session, Host: l.Host, Port: l.Port, What: l.What, Where: l.Where})
	}})
	if err != nil {
		return nil, err
	}
	return func(id string, role configs.Role, expires time.Time) (broker.ProxySession, error) {
		s, err := d.Open(id, role, expires)
		if err != nil {
			return nil, err
		}
		return s, nil
	}, nil
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

// hangups catches SIGHUP from now on, so it never kills the daemon (a
// closed terminal, or an operator reloading): each one is a reload request
// on the returned channel, which Serve acts on once it is serving (one
// that comes earlier is kept and acted on then). stop releases the signal.
func hangups() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// serveConfig loads the config at path with the flags that override it
// applied: at start, and again on each reload.
func serveConfig(g *globalOpts, path string) (*configs.Config, error) {
	cfg, err := configs.Load(path)
	if err != nil {
		return nil, err
	}
	if g.socket != "" {
		cfg.Broker.Socket = g.socket
	}
	return cfg, nil
}
