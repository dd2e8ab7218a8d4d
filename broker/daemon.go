package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"log/syslog"
	"os"
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
	// OpenStore opens the lease store (leases/storeopen.Open): only the
	// daemon binary links the store drivers.
	OpenStore func(ctx context.Context, c configs.Store) (leases.Store, error)
	// BuildProviders constructs the registry (providers/all.Build).
	BuildProviders func(ctx context.Context, cfg *configs.Config, j providers.Journal, log *slog.Logger) (*providers.Registry, error)
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
	// NewProxy builds proxy delivery (broker/proxy); nil: roles that
	// deliver by proxy cannot start. onLeak is to be told of every
	// attempted leak.
	NewProxy func(cfg *configs.Config, onLeak func(ProxyLeak), log *slog.Logger) (OpenProxyFunc, error)
	// Metrics, if set, is the metrics exporter (broker/metrics): it
	// observes the broker and is served on broker.metrics.listen. Only the
	// daemon binary links it.
	Metrics MetricsExporter
	// Reloads, with LoadConfig, reloads the config on each value received
	// (the daemon's SIGHUPs): LoadConfig reads and validates the file
	// again, and Broker.Reload applies what can be applied live. An
	// admin's `credbroker config reload` uses LoadConfig too.
	Reloads    <-chan os.Signal
	LoadConfig func() (*configs.Config, error)
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
	if err := checkDaemonDirs(cfg.Broker); err != nil {
		return err
	}
	host, err := cfg.EffectiveHostID()
	if err != nil {
		return err
	}
	cfg.Broker.HostID = host // the providers record their own credentials under it
	st, err := o.OpenStore(ctx, cfg.Store)
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
	obs, err := daemonMetrics(cfg.Broker.Metrics, o.Metrics, audit)
	if err != nil {
		return err
	}
	reg, err := o.BuildProviders(ctx, cfg, NewJournal(st, audit, log), log)
	if err != nil {
		return err
	}
	defer reg.Close()
	g, err := guard.Open(cfg.Broker.StateDir)
	if err != nil {
		return err
	}
	w := &agentenv.Writer{Root: filepath.Join(cfg.Broker.RuntimeDir, "sessions"), AllowDisk: o.AllowDisk, Logger: log}
	var b *Broker
	var openProxy OpenProxyFunc
	if o.NewProxy != nil {
		// Leaks are reported only by gateways, which open after b is set.
		if openProxy, err = o.NewProxy(cfg, func(l ProxyLeak) { b.onProxyLeak(l) }, log); err != nil {
			return err
		}
	}
	b = New(Options{Config: cfg, Store: st, Providers: reg, Env: w, Audit: audit, Guard: g, Logger: log, Hooks: o.Hooks, Now: o.Now, HostID: host,
		EgressDir: filepath.Join(cfg.Broker.RuntimeDir, "egress"), EgressDial: o.EgressDial, OpenProxy: openProxy, Metrics: obs, LoadConfig: o.LoadConfig})
	defer b.CloseEgress()
	stopMetrics, err := serveMetrics(cfg.Broker.Metrics, o.Metrics, b, log)
	if err != nil {
		return err
	}
	defer stopMetrics() // before the store closes: a scrape reads it

	l, err := listen(cfg.Broker.Socket, len(cfg.Broker.AllowedUIDs) > 0, log) // systemd's socket, or its own
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
	if err := b.RegisterHost(ctx); err != nil {
		log.Warn("record this host and its provider fingerprints (retried by the loops)", "err", err)
	}
	if err := b.Reconcile(ctx); err != nil {
		log.Error("reconcile at start-up (retried by the loops)", "err", err)
	}
	b.loadCache(ctx)
	b.endProxySessions(ctx)
	b.reopenEgress(ctx)
	var wg sync.WaitGroup
	errc := make(chan error, 1)
	wg.Go(func() { errc <- srv.Serve(l) })
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	wd := newWatchdog(log)
	wg.Go(func() { b.loop(loopCtx, cfg.Broker.RefreshInterval.D(), wd.beat) })
	wg.Go(func() { wd.run(loopCtx, log) })
	wg.Go(func() { b.WatchIncidents(loopCtx) })
	if o.Reloads != nil && o.LoadConfig != nil {
		wg.Go(func() { b.reloadOn(loopCtx, o.Reloads) })
	}
	if o.Ready != nil {
		o.Ready()
	}
	notify(log, "READY=1\nSTATUS=serving "+cfg.Broker.Socket)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	notify(log, "STOPPING=1\nSTATUS=stopping")
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

// checkDaemonDirs checks that broker.daemon_uid, when set, is this
// process's uid (clients trust only it and root), and creates or checks the
// runtime dir: it must be the daemon's and not writable by others (see
// checkPrivateDir). It is created 0700 when it holds the socket, as Listen
// would, else 0711 as agentenv would, so agents' uids reach their own
// session dirs.
func checkDaemonDirs(b configs.Broker) error {
	if b.DaemonUID != nil && *b.DaemonUID != daemonUID {
		return fmt.Errorf("broker.daemon_uid is %d but the daemon runs as uid %d: clients would refuse it; run the daemon as uid %d or set broker.daemon_uid to %d",
			*b.DaemonUID, daemonUID, *b.DaemonUID, daemonUID)
	}
	perm := os.FileMode(0o711)
	if filepath.Dir(b.Socket) == filepath.Clean(b.RuntimeDir) {
		perm = 0o700
	}
	return ensurePrivateDir("broker.runtime_dir", b.RuntimeDir, perm)
}

// reloadOn reloads the config on each value of reloads (SIGHUP) until
// ctx ends.
func (b *Broker) reloadOn(ctx context.Context, reloads <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reloads:
		}
		_, _ = b.reloadNotified(nil) // logged and audited
	}
}

// backlogRetry is how often, between ticks, the loop tries to record what
// was done while the store was unreachable: an incident declared then must
// reach the store (and the fleet) soon after it is back.
const backlogRetry = time.Second

// loop runs Tick every interval until ctx ends; it calls beat on every
// turn (the systemd watchdog pings only while it does).
func (b *Broker) loop(ctx context.Context, interval time.Duration, beat func()) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	retry := time.NewTicker(backlogRetry)
	defer retry.Stop()
	for {
		beat()
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
