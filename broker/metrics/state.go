package metrics

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/credbroker/credbroker/broker"
)

// stateTimeout bounds the store queries of one scrape.
const stateTimeout = 5 * time.Second

// stateCollector reads the gauges of what is live from the broker at
// scrape time, so they are never out of step with the store (a session
// ended by another broker of a fleet, a revocation retried, an incident
// declared elsewhere), and nothing is kept in sync by hand.
type stateCollector struct {
	state    broker.StateReader
	sessions *prometheus.Desc
	leases   *prometheus.Desc
	pending  *prometheus.Desc
	incident *prometheus.Desc
	storeUp  *prometheus.Desc
}

func newStateCollector(state broker.StateReader) *stateCollector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "", n) }
	return &stateCollector{
		state: state,
		sessions: prometheus.NewDesc(name("live_sessions"),
			"Sessions of this broker that are starting or active, by role.", []string{"role"}, nil),
		leases: prometheus.NewDesc(name("active_leases"),
			"Leases of this broker (its sessions' and its own) that are active, by provider.", []string{"provider"}, nil),
		pending: prometheus.NewDesc(name("revocations_pending"),
			"Leases whose revocation failed and is being retried, by provider.", []string{"provider"}, nil),
		incident: prometheus.NewDesc(name("incident_active"),
			"1 while an incident is declared (new sessions are refused), else 0.", nil, nil),
		storeUp: prometheus.NewDesc(name("store_up"),
			"1 if the lease store answered this scrape's queries, else 0 (and the session, lease and incident gauges are left out).", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.leases, c.pending, c.incident, c.storeUp} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: one broker.MetricsState read.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), stateTimeout)
	defer cancel()
	st, err := c.state.MetricsState(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.storeUp, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(c.storeUp, prometheus.GaugeValue, 1)
	for _, role := range names(st.Roles, st.LiveSessions) {
		ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(st.LiveSessions[role]), role)
	}
	for _, p := range names(st.Providers, st.ActiveLeases, st.PendingRevocations) {
		ch <- prometheus.MustNewConstMetric(c.leases, prometheus.GaugeValue, float64(st.ActiveLeases[p]), p)
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(st.PendingRevocations[p]), p)
	}
	incident := 0.0
	if st.Incident {
		incident = 1
	}
	ch <- prometheus.MustNewConstMetric(c.incident, prometheus.GaugeValue, incident)
}

// names is the sorted union of configured and the keys of counts.
func names(configured []string, counts ...map[string]int) []string {
	set := make(map[string]bool, len(configured))
	for _, n := range configured {
		set[n] = true
	}
	for _, m := range counts {
		for n := range m {
			set[n] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}
