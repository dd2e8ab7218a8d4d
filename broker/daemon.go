package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"path/filepath"
	"sync"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/broker/egress"
	"github.com/credbroker/credbroker/broker/guard"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// DaemonOptions configure Serve.
type DaemonOptions struct {
	Config *configs.Config
	Logger *slog.Logger
	// AllowDisk lets session dirs live on a disk filesystem. Tests only.
	AllowDisk bool
	// BuildProviders constructs the registry (providers/all.Build).
	BuildProviders func(ctx context.Context, cfg *configs.Config, st leases.Store, log *slog.Logger) (*providers.Registry, error)
	// Hooks are test failpoints.
	Hooks Hooks
	// Now is the broker's clock; nil means time.Now. Crash tests move it
	// forward.
	Now func() time.Time
	// Ready, if set, is called once the socket accepts requests.
	Ready func()
	// EgressDial, if set, replaces the egress gateways' dialer (tests
	// that prove a refused address is never dialed).
	EgressDial egress.DialFunc
}

// Serve runs the daemon until ctx ends: it opens the store and audit log,
// builds the providers, reconciles, listens on the socket and runs the
// background loops. On shutdown live sessions stay recorded and their dirs
// stay in place, so a restarted daemon carries on with them.
func Serve(ctx context.Context, o DaemonOptions) error {
	cfg, log := o.Config, o.Logger
	if !o.AllowDisk {
		if err := agentenv.CheckMemoryFS(cfg.Broker.RuntimeDir); err != nil {
			return err
		}
	}
	host, err := cfg.EffectiveHostID()
	if err != nil {
		return err
	}
	cfg.Broker.HostID = host // the providers record their own credentials under it
	st, err := openStore(ctx, cfg.Store)
	if err != nil {
		return err
	}
	defer st.Close()
	audit, err := OpenAudit(cfg.Broker.AuditLog)
	if err != nil {
		return err
	}
	defer audit.Close()
	if cfg.Broker.AuditSyslog {
		sw, err := syslog.New(syslog.LOG_AUTHPRIV|syslog.LOG_INFO, "credbroker")
		if err != nil {
			return fmt.Errorf("audit_syslog: connect to the local syslog: %w", err)
		}
		defer sw.Close()
		audit.MirrorTo(sw)
	}
	reg, err := o.BuildProviders(ctx, cfg, st, log)
	if err != nil {
		return err
	}
	defer reg.Close()
	g, err := guard.Open(cfg.Broker.StateDir)
	if err != nil {
		return err
	}
	w := &agentenv.Writer{Root: filepath.Join(cfg.Broker.RuntimeDir, "sessions"), AllowDisk: o.AllowDisk, Logger: log}
	b := New(Options{Config: cfg, Store: st, Providers: reg, Env: w, Audit: audit, Guard: g, Logger: log, Hooks: o.Hooks, Now: o.Now, HostID: host,
		EgressDir: filepath.Join(cfg.Broker.RuntimeDir, "egress"), EgressDial: o.EgressDial})
	defer b.CloseEgress()

	l, err := Listen(cfg.Broker.Socket, len(cfg.Broker.AllowedUIDs) > 0)
	if err != nil {
		return err
	}
	srv := NewServer(b, cfg.Broker.AllowedUIDs, log)
	b.record(Event{Event: EvDaemonStart, Reason: "pid " + fmt.Sprint(pidSelf())})
	log.Info("credbroker serving", "socket", cfg.Broker.Socket, "providers", reg.Names(), "roles", cfg.RoleNames(), "config", cfg.Path, "host", host)

	// Before serving: an incident declared while this broker was down is
	// handled here first (dirs wiped, sessions revoked), then a crash's
	// leftovers are settled.
	b.CheckIncident(ctx)
	if err := b.Reconcile(ctx); err != nil {
		log.Error("reconcile at start-up (retried by the loops)", "err", err)
	}
	b.loadCache(ctx)
	b.reopenEgress(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { errc <- srv.Serve(l) })
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	wg.Go(func() { b.loop(loopCtx, cfg.Broker.RefreshInterval.D()) })
	wg.Go(func() { b.WatchIncidents(loopCtx) })
	if o.Ready != nil {
		o.Ready()
	}
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.Info("shutting down; live sessions stay recorded and are picked up on restart")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Warn("shutdown", "err", err)
	}
	stopLoops()
	wg.Wait()
	b.CloseEgress() // their connections end with the daemon; reopened at the next start
	b.record(Event{Event: EvDaemonStop})
	return serveErr
}

// backlogRetry is how often, between ticks, the loop tries to record what
// was done while the store was unreachable: an incident declared then must
// reach the store (and the fleet) soon after it is back.
const backlogRetry = time.Second

// loop runs Tick every interval until ctx ends.
func (b *Broker) loop(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	retry := time.NewTicker(backlogRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.Tick(ctx)
		case <-retry.C:
			b.flushBacklog(ctx)
		}
	}
}
