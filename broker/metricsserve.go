package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/credbroker/credbroker/configs"
)

// metricsPath is where the metrics are served.
const metricsPath = "/metrics"

// metricsSocketMode lets the daemon's uid and group scrape the socket (a
// proxy or agent in the daemon's group); others are refused by the kernel.
const metricsSocketMode = 0o660

// metricsShutdown bounds how long a scrape in flight may delay the
// daemon's stop.
const metricsShutdown = 2 * time.Second

// daemonMetrics returns the observer for the daemon: the exporter when
// broker.metrics.listen is set (its audit write failures counted too), nil
// when metrics are off.
func daemonMetrics(c configs.BrokerMetrics, exp MetricsExporter, audit *AuditLog) (Metrics, error) {
	if c.Listen == "" {
		return nil, nil
	}
	if exp == nil {
		return nil, errors.New("broker.metrics.listen is set but this build has no metrics exporter; run credbroker-daemon, or remove broker.metrics")
	}
	audit.OnWriteFailure(exp.AuditWriteFailed)
	return exp, nil
}

// serveMetrics listens on broker.metrics.listen and serves the exporter's
// handler there until the returned stop is called. With metrics off it
// does nothing.
func serveMetrics(c configs.BrokerMetrics, exp MetricsExporter, state StateReader, log *slog.Logger) (stop func(), err error) {
	if c.Listen == "" || exp == nil {
		return func() {}, nil
	}
	network, addr, err := configs.ParseMetricsListen(c.Listen)
	if err != nil {
		return nil, fmt.Errorf("broker.metrics.listen: %w", err)
	}
	l, err := listenMetrics(network, addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET "+metricsPath, exp.Handler(state))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "listen", c.Listen, "err", err)
		}
	})
	log.Info("serving metrics", "listen", c.Listen, "path", metricsPath)
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdown)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			_ = srv.Close()
		}
		wg.Wait()
		if network == "unix" {
			_ = os.Remove(addr)
		}
	}, nil
}

// listenMetrics opens the metrics listener. A Unix socket's directory is
// created (0750) if missing; a socket left by a dead daemon is replaced,
// one that answers is not.
func listenMetrics(network, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	if network == "tcp" {
		l, err := lc.Listen(context.Background(), "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("broker.metrics.listen: listen on %s: %w (another process holds the port? pick another in the config)", addr, err)
		}
		return l, nil
	}
	if err := os.MkdirAll(filepath.Dir(addr), 0o750); err != nil {
		return nil, fmt.Errorf("broker.metrics.listen: create the socket's directory: %w", err)
	}
	d := net.Dialer{Timeout: time.Second}
	if c, err := d.DialContext(context.Background(), "unix", addr); err == nil {
		c.Close()
		return nil, fmt.Errorf("broker.metrics.listen: another process is already serving %s", addr)
	}
	if fi, err := os.Lstat(addr); err == nil && fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("broker.metrics.listen: %s exists and is not a socket; name another path", addr)
	}
	if err := os.Remove(addr); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("broker.metrics.listen: remove stale socket %s: %w", addr, err)
	}
	old := umask(0o117)
	l, err := lc.Listen(context.Background(), "unix", addr)
	umask(old)
	if err != nil {
		return nil, fmt.Errorf("broker.metrics.listen: listen on %s: %w", addr, err)
	}
	if err := os.Chmod(addr, metricsSocketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("broker.metrics.listen: chmod %s: %w", addr, err)
	}
	return l, nil
}
