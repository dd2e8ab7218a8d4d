// Package broker owns the session lifecycle (start, refresh, end, expire),
// incident response (revoke all, the lock), the daemon's background loops,
// and its HTTP+JSON API over a Unix socket. It knows no provider's wire
// protocol: it drives providers.Provider, leases.Store and agentenv.Writer.
package broker

import (
	"crypto/rand"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/credbroker/credbroker/agentenv"
	"github.com/credbroker/credbroker/broker/egress"
	"github.com/credbroker/credbroker/broker/guard"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Sentinel errors callers branch on (the API maps them to codes and the CLI
// to exit statuses).
var (
	ErrUnknownRole = errors.New("unknown role")
	ErrBadRequest  = errors.New("bad request")
	ErrIncident    = errors.New("incident declared")
	ErrNotFound    = errors.New("session not found")
	ErrForbidden   = errors.New("forbidden")
	ErrProvider    = errors.New("provider failed")
	ErrPending     = errors.New("revocations pending")
	// ErrAuditUnavailable: the audit log cannot be written, and the broker
	// hands out nothing it cannot audit (revocations still go ahead).
	ErrAuditUnavailable = errors.New("audit log unavailable")
)

// Caller identifies who asked (from SO_PEERCRED on the daemon socket).
type Caller struct {
	UID int
	PID int
	// GIDs are the caller's primary and supplementary group ids (from
	// SO_PEERCRED and SO_PEERGROUPS).
	GIDs []int
}

// Options configure a Broker.
type Options struct {
	Config    *configs.Config
	Store     leases.Store
	Providers *providers.Registry
	Env       *agentenv.Writer
	Audit     *AuditLog
	// Guard keeps fingerprints of issued secrets (nil: no leak guard).
	Guard  *guard.Guard
	Logger *slog.Logger
	// Now is the clock (tests inject one); default time.Now.
	Now func() time.Time
	// Hooks are failpoints for crash tests; nil in production.
	Hooks Hooks
	// HostID names this broker among those sharing the store (fleet
	// mode): it owns the sessions it starts, and its loops, reconciler and
	// incident handling touch only those. Empty for a single broker: every
	// session in the store is its own.
	HostID string
	// EgressDir holds the sessions' egress gateway sockets
	// (<runtime_dir>/egress); empty: no gateways are served.
	EgressDir string
	// EgressDial replaces the gateways' dialer (tests that prove a
	// refused address is never dialed); nil: a plain TCP dialer.
	EgressDial egress.DialFunc
	// OpenProxy opens the proxy side of sessions whose role delivers by
	// proxy (broker/proxy); nil: such roles cannot start.
	OpenProxy OpenProxyFunc
	// Metrics observes the broker (broker/metrics in the daemon); nil: no
	// metrics.
	Metrics Metrics
	// LoadConfig reads and validates the config file again, for reload
	// requests (`credbroker config reload`); nil: they are refused.
	LoadConfig func() (*configs.Config, error)
}

// Hooks lets tests stop the broker at exact steps.
type Hooks interface {
	// At is called at named steps ("after-mint", "after-record", ...).
	At(step string)
}

// Broker is the session manager.
type Broker struct {
	// cfg is the running config: a SIGHUP reload swaps it (reload.go).
	// Read it once per operation (config()), so one operation sees one
	// config. built is the config the daemon started with, which the
	// providers, store, socket and loops were set up from.
	cfg        atomic.Pointer[configs.Config]
	built      *configs.Config
	reloadMu   sync.Mutex // one reload at a time
	loadConfig func() (*configs.Config, error)
	store      leases.Store
	provs      *providers.Registry
	env        *agentenv.Writer
	audit      *AuditLog
	guard      *guard.Guard
	log        *slog.Logger
	now        func() time.Time
	hooks      Hooks
	host       string

	egress *egress.Manager // nil: no egress gateways

	openProxyFn OpenProxyFunc
	proxyMu     sync.Mutex
	proxies     map[string]ProxySession // by session id
	metrics     Metrics                 // nopMetrics when none

	locks sync.Map // session id → *sync.Mutex

	lastPrune time.Time // of the guard's fingerprints

	fps          map[string]string // provider config fingerprints
	lastRegister time.Time         // last RegisterHost

	cache   sessionCache // own live sessions, for when the store is away
	backlog backlog      // what to record once the store is back

	// revokingAll counts RevokeAll calls running here: the incident notice
	// that this broker's own RevokeAll causes needs no second pass.
	revokingAll atomic.Int32
	// notices wakes the incident worker (capacity 1: notices coalesce),
	// which handles lastNotice.
	notices    chan struct{}
	lastNotice atomic.Pointer[leases.Incident]
}

// New returns a Broker.
func New(o Options) *Broker {
	b := &Broker{
		built: o.Config, store: o.Store, provs: o.Providers, env: o.Env,
		audit: o.Audit, guard: o.Guard, log: o.Logger, now: o.Now, hooks: o.Hooks,
		host: o.HostID, notices: make(chan struct{}, 1), metrics: o.Metrics, loadConfig: o.LoadConfig,
		openProxyFn: o.OpenProxy, proxies: map[string]ProxySession{},
	}
	if b.metrics == nil {
		b.metrics = nopMetrics{}
	}
	b.cfg.Store(o.Config)
	if b.log == nil {
		b.log = slog.Default()
	}
	if b.now == nil {
		b.now = time.Now
	}
	if o.Config != nil {
		b.fps = o.Config.ProviderFingerprints()
	}
	if o.EgressDir != "" {
		b.egress = egress.NewManager(egress.ManagerConfig{Dir: o.EgressDir, Config: o.Config,
			Dial: o.EgressDial, Report: b.egressReport, Logger: b.log})
	}
	return b
}

// config is the running config (see Broker.cfg).
func (b *Broker) config() *configs.Config { return b.cfg.Load() }

// HostID is the broker's host id ("" for a single broker).
func (b *Broker) HostID() string { return b.host }

// owns reports whether s is this broker's: its host's, or any session for
// a single broker.
func (b *Broker) owns(s leases.Session) bool { return b.host == "" || s.HostID == b.host }

// own is a session filter for this broker's sessions in states.
func (b *Broker) own(states ...leases.SessionState) leases.SessionFilter {
	return leases.SessionFilter{States: states, HostID: b.host}
}

func (b *Broker) at(step string) {
	if b.hooks != nil {
		b.hooks.At(step)
	}
}

// lock serialises state changes of one session (start, refresh, end).
func (b *Broker) lock(id string) func() {
	m, _ := b.locks.LoadOrStore(id, &sync.Mutex{})
	mu := m.(*sync.Mutex)
	mu.Lock()
	return mu.Unlock
}

func (b *Broker) record(ev Event) {
	if err := b.audit.Record(ev); err != nil {
		b.log.Error("AUDIT LOG WRITE FAILED", "event", ev.Event, "session", ev.Session, "err", err)
	}
}

// newSessionID returns "s-" and 16 lower-case base32 characters (80 bits).
func newSessionID() string {
	return "s-" + strings.ToLower(rand.Text()[:16])
}

func uidPtr(u int) *int { return &u }

// fingerprint hands a grant's secrets to the leak guard.
func (b *Broker) fingerprint(sessionID, provider string, ss []providers.IssuedSecret) {
	if b.guard == nil || len(ss) == 0 {
		return
	}
	items := make([]guard.Issued, 0, len(ss))
	for _, s := range ss {
		if !s.Public {
			items = append(items, guard.Issued{Value: s.Value, Session: sessionID, Provider: provider, What: s.What, Expires: s.Expires})
		}
	}
	if err := b.guard.Add(items...); err != nil {
		b.log.Error("leak guard: record fingerprints", "session", sessionID, "err", err)
	}
}
