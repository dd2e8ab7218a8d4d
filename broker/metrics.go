package broker

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Metrics observes what the broker does, for a metrics exporter. The
// exporter lives in broker/metrics, which only the daemon binary links:
// this package, imported by the client binary, stays free of it.
//
// Implementations MUST be safe for concurrent use and MUST return at once
// (they are called on the request path). Every string argument is bounded:
// role and provider names come from the config (UnknownRole stands for a
// role that is not), result and reason from the fixed sets documented on
// each method. None ever carries a session id, a host name or a secret.
type Metrics interface {
	// SessionStart reports how a session start ended: result is "ok",
	// "refused" (nothing was minted) or "failed" (what was minted was
	// revoked); reason is one of StartReasons.
	SessionStart(role, result, reason string)
	// Mint reports one provider's mint call and how long it took.
	Mint(provider string, d time.Duration, ok bool)
	// Revoke reports one lease revocation call and how long it took.
	Revoke(provider string, d time.Duration, ok bool)
	// AuditWriteFailed reports an audit record that could not be written.
	AuditWriteFailed()
	// OrphansFound reports n credentials the reconciler found at a
	// provider that the store did not know (a crash's leftovers).
	OrphansFound(provider string, n int)
	// EgressConn reports one connection through a session's egress
	// gateway; decision is "allow" or "deny".
	EgressConn(role, decision string)
}

// MetricsExporter is what DaemonOptions.Metrics provides: the observer the
// broker reports to and the handler that serves the metrics.
type MetricsExporter interface {
	Metrics
	// Handler serves the metrics; it reads state at each scrape for the
	// gauges of what is live now.
	Handler(state StateReader) http.Handler
}

// StateReader reads the broker's state for scrape-time gauges (*Broker
// implements it).
type StateReader interface {
	MetricsState(ctx context.Context) (MetricsState, error)
}

// MetricsState is what is live at one moment. Every configured role and
// provider is listed in Roles and Providers, so that an idle one still has
// its series (at 0); the maps may also hold names a reloaded config no
// longer has.
type MetricsState struct {
	Roles     []string
	Providers []string
	// LiveSessions counts this broker's starting and active sessions by
	// role.
	LiveSessions map[string]int
	// ActiveLeases and PendingRevocations count this broker's leases
	// (its sessions' and its own) by provider and state.
	ActiveLeases       map[string]int
	PendingRevocations map[string]int
	// Incident is set while the incident lock refuses new sessions.
	Incident bool
}

// UnknownRole is the role label of a start refused for a role the config
// does not define (role names cannot start with "_"): the name asked for
// is the caller's input and could be anything.
const UnknownRole = "_unknown"

// Start results and reasons (Metrics.SessionStart).
const (
	StartOK      = "ok"
	StartRefused = "refused"
	StartFailed  = "failed"
)

// StartReasons are the reasons SessionStart reports: "none" for a start
// that succeeded, else the kind of error that stopped it.
var StartReasons = []string{"none", "unknown_role", "forbidden", "bad_request", "incident",
	"store_unavailable", "audit_unavailable", "provider", "other"}

// startReason maps a start's error to one of StartReasons.
func startReason(err error) string {
	for _, k := range []struct {
		err    error
		reason string
	}{
		{ErrUnknownRole, "unknown_role"}, {ErrForbidden, "forbidden"}, {ErrBadRequest, "bad_request"},
		{ErrIncident, "incident"}, {ErrStoreUnavailable, "store_unavailable"},
		{ErrAuditUnavailable, "audit_unavailable"}, {ErrProvider, "provider"},
	} {
		if errors.Is(err, k.err) {
			return k.reason
		}
	}
	if err == nil {
		return "none"
	}
	return "other"
}

// observeStart reports a start's outcome; role is the name asked for.
func (b *Broker) observeStart(role, result string, err error) {
	if _, ok := b.config().Roles[role]; !ok {
		role = UnknownRole
	}
	b.metrics.SessionStart(role, result, startReason(err))
}

// revokeTimed calls p.Revoke and reports the call to the metrics. A
// lease already gone and a provider's notice count as success, as they
// do for the broker.
func (b *Broker) revokeTimed(ctx context.Context, p providers.Provider, l leases.Lease) error {
	start := time.Now()
	err := p.Revoke(ctx, l)
	var notice *providers.Notice
	ok := err == nil || errors.Is(err, providers.ErrAlreadyRevoked) || errors.As(err, &notice)
	b.metrics.Revoke(p.Name(), time.Since(start), ok)
	return err
}

// MetricsState reads what is live now: three store queries, bounded by
// the live sessions and leases of this broker.
func (b *Broker) MetricsState(ctx context.Context) (MetricsState, error) {
	st := MetricsState{
		Roles: b.config().RoleNames(), Providers: b.provs.Names(),
		LiveSessions: map[string]int{}, ActiveLeases: map[string]int{}, PendingRevocations: map[string]int{},
	}
	ss, err := b.store.ListSessions(ctx, b.own(leases.SessionStarting, leases.SessionActive))
	if err != nil {
		return st, err
	}
	for _, s := range ss {
		st.LiveSessions[s.Role]++
	}
	ls, err := b.store.FindLeases(ctx, leases.LeaseFilter{HostID: b.host})
	if err != nil {
		return st, err
	}
	for _, l := range ls {
		if l.State == leases.LeaseRevokePending {
			st.PendingRevocations[l.Provider]++
		} else {
			st.ActiveLeases[l.Provider]++
		}
	}
	_, st.Incident, err = b.store.GetIncident(ctx)
	if _, held := b.backlog.hasIncident(); held {
		st.Incident = true // declared while the store was away
	}
	return st, err
}

// nopMetrics is the Metrics of a broker without an exporter.
type nopMetrics struct{}

func (nopMetrics) SessionStart(string, string, string) {}
func (nopMetrics) Mint(string, time.Duration, bool)    {}
func (nopMetrics) Revoke(string, time.Duration, bool)  {}
func (nopMetrics) AuditWriteFailed()                   {}
func (nopMetrics) OrphansFound(string, int)            {}
func (nopMetrics) EgressConn(string, string)           {}
