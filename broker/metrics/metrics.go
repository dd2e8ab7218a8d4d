// Package metrics exports the broker's Prometheus metrics: it implements
// broker.MetricsExporter with client_golang collectors. Only the daemon
// binary links it (cmd/credbroker/serve_daemon.go); the client binary,
// which imports package broker, never links Prometheus.
//
// No label carries a session id, a host name or a secret: roles and
// providers come from the config, the other labels from fixed sets.
package metrics

import (
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
)

// namespace prefixes every metric of the broker's own.
const namespace = "credbroker"

// durationBuckets span a local Vault call (milliseconds) to an IAM user
// created and propagated (tens of seconds).
var durationBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}

// Exporter holds the broker's counters and histograms; the gauges of what
// is live are read from the broker at each scrape (see Handler).
type Exporter struct {
	reg           *prometheus.Registry
	starts        *prometheus.CounterVec
	mint          *prometheus.HistogramVec
	revoke        *prometheus.HistogramVec
	auditFailures prometheus.Counter
	orphans       *prometheus.CounterVec
	egress        *prometheus.CounterVec
}

var _ broker.MetricsExporter = (*Exporter)(nil)

// New returns an Exporter with the Go runtime and process collectors, and
// a series at zero for what cfg configures (each role's successful starts,
// each provider's orphans, each egress role's decisions), so that
// rate() and increase() see the first event.
func New(cfg *configs.Config) *Exporter {
	e := &Exporter{
		reg: prometheus.NewRegistry(),
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "session_starts_total",
			Help: "Session starts by role and result (ok, refused: nothing minted, failed: what was minted was revoked) and reason (none, or the kind of error)."},
			[]string{"role", "result", "reason"}),
		mint: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "mint_duration_seconds",
			Help: "Duration of provider mint calls (one per provider per session start), by provider and result.", Buckets: durationBuckets},
			[]string{"provider", "result"}),
		revoke: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "revoke_duration_seconds",
			Help: "Duration of lease revocation calls to providers, by provider and result.", Buckets: durationBuckets},
			[]string{"provider", "result"}),
		auditFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "audit_write_failures_total",
			Help: "Audit records that could not be written to the audit log."}),
		orphans: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "reconciler_orphans_found_total",
			Help: "Credentials the reconciler found at a provider that the lease store did not know (a crash's leftovers), by provider."},
			[]string{"provider"}),
		egress: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "egress_connections_total",
			Help: "Connections through the sessions' egress gateways, by role and decision (allow, deny)."},
			[]string{"role", "decision"}),
	}
	e.reg.MustRegister(e.starts, e.mint, e.revoke, e.auditFailures, e.orphans, e.egress,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.initSeries(cfg)
	return e
}

// initSeries creates the series cfg makes known, at zero.
func (e *Exporter) initSeries(cfg *configs.Config) {
	if cfg == nil {
		return
	}
	for _, name := range cfg.RoleNames() {
		e.starts.WithLabelValues(name, broker.StartOK, "none")
		if cfg.Roles[name].Egress != nil {
			e.egress.WithLabelValues(name, "allow")
			e.egress.WithLabelValues(name, "deny")
		}
	}
	for _, p := range slices.Sorted(maps.Keys(cfg.ProviderFingerprints())) {
		e.orphans.WithLabelValues(p)
	}
}

// Handler serves the metrics in the Prometheus text format (or
// OpenMetrics, when asked). state is read at each scrape.
func (e *Exporter) Handler(state broker.StateReader) http.Handler {
	live := prometheus.NewRegistry()
	live.MustRegister(newStateCollector(state))
	return promhttp.HandlerFor(prometheus.Gatherers{e.reg, live}, promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapes,
		Timeout:             scrapeTimeout,
	})
}

// maxScrapes bounds concurrent scrapes, so that scrapes cannot load the
// store; more are answered 503.
const maxScrapes = 4

// scrapeTimeout bounds one scrape; the store queries get less.
const scrapeTimeout = 10 * time.Second

// SessionStart implements broker.Metrics.
func (e *Exporter) SessionStart(role, result, reason string) {
	e.starts.WithLabelValues(role, result, reason).Inc()
}

// Mint implements broker.Metrics.
func (e *Exporter) Mint(provider string, d time.Duration, ok bool) {
	e.mint.WithLabelValues(provider, result(ok)).Observe(d.Seconds())
}

// Revoke implements broker.Metrics.
func (e *Exporter) Revoke(provider string, d time.Duration, ok bool) {
	e.revoke.WithLabelValues(provider, result(ok)).Observe(d.Seconds())
}

// AuditWriteFailed implements broker.Metrics.
func (e *Exporter) AuditWriteFailed() { e.auditFailures.Inc() }

// OrphansFound implements broker.Metrics.
func (e *Exporter) OrphansFound(provider string, n int) {
	e.orphans.WithLabelValues(provider).Add(float64(n))
}

// EgressConn implements broker.Metrics.
func (e *Exporter) EgressConn(role, decision string) {
	e.egress.WithLabelValues(role, decision).Inc()
}

// result is the result label of a call.
func result(ok bool) string {
	if ok {
		return "ok"
	}
	return "error"
}
