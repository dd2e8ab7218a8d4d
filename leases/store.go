// Package leases records what the broker issued: sessions, the leases minted
// for them, write-ahead intents and the incident lock. A Store never holds a
// secret value: only identifiers (accessors, lease ids), times and state.
package leases

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrNotFound is returned when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrStateChanged is returned by a conditional update that found the record
// in another state than it requires (changed meanwhile by someone else).
var ErrStateChanged = errors.New("state changed")

// SessionState is where a session is in its life.
type SessionState string

// Session states. A session is Starting from the moment it is recorded
// until its credentials are minted, recorded and written to its dir; then
// it is Active until it is asked to end. It is Ending while any of its
// leases still waits for revocation, and Ended once all are revoked (ended
// sessions are kept for status and audit). A Starting session may hold
// leases: a start that fails, or a crash, ends it like an active one.
const (
	SessionStarting SessionState = "starting"
	SessionActive   SessionState = "active"
	SessionEnding   SessionState = "ending"
	SessionEnded    SessionState = "ended"
)

// Session is one agent session.
type Session struct {
	ID        string
	Role      string
	UID       int // owner of the session dir; -1 means the broker's own uid
	CallerUID int // uid of the client that started it
	Dir       string
	CreatedAt time.Time
	ExpiresAt time.Time
	State     SessionState
	EndReason string
	EndedAt   time.Time
	// HostID is the broker host that owns the session (fleet mode): it
	// created it, holds its dir, refreshes, reaps and ends it. Empty for a
	// single broker. It is set by CreateSession and never changed by
	// UpdateSession.
	HostID string
}

// LeaseState is where a lease is in its life.
type LeaseState string

// Lease states. A lease is deleted from the store only after its revocation
// succeeded (DESIGN durability rule 3), so a revoked lease is never kept.
const (
	LeaseActive        LeaseState = "active"
	LeaseRevokePending LeaseState = "revoke_pending"
)

// Lease is one credential minted by a provider for a session.
type Lease struct {
	// ID is path-shaped and unique: "<provider>/<kind>/<external id>", so
	// revoke-by-prefix works.
	ID        string
	SessionID string
	Provider  string
	Kind      string
	// ExternalID is the backend's non-secret handle (a Vault accessor or
	// lease id, an AWS access key id, a service account name).
	ExternalID string
	IssuedAt   time.Time
	ExpiresAt  time.Time
	Renewable  bool
	State      LeaseState
	// Attempts, LastError and NextAttempt track revocation retries. On an
	// active lease, NextAttempt, when set, is when the refresher renews it
	// early (after an AWS revocation cut-off denied its credentials).
	Attempts    int
	LastError   string
	NextAttempt time.Time
	// Data is provider-internal, non-secret data returned to the provider on
	// renew and revoke.
	Data map[string]string
}

// Intent is a write-ahead record: "about to mint Provider for SessionID".
// It is committed before the provider is called and deleted once the
// resulting leases are recorded (or the mint failed and was cleaned up).
type Intent struct {
	ID        string
	SessionID string
	Provider  string
	CreatedAt time.Time
	Data      map[string]string
}

// Incident is the persisted lock that refuses new sessions.
type Incident struct {
	Reason     string
	DeclaredAt time.Time
	CallerUID  int
}

// SessionFilter selects sessions in ListSessions. Zero values match all.
type SessionFilter struct {
	States []SessionState
	// ExpiredBefore, when set, keeps only sessions with ExpiresAt before it.
	ExpiredBefore time.Time
	// ExpiresAfter, when set, keeps only sessions with ExpiresAt after it
	// (AWS's deny policy: ended sessions whose credentials may still be
	// valid).
	ExpiresAfter time.Time
	// HostID, when set, keeps only the sessions that host owns.
	HostID string
}

// LeaseFilter selects leases in FindLeases. Zero values match all.
type LeaseFilter struct {
	// State, when set, keeps only leases in that state.
	State LeaseState
	// HostID, when set, keeps only the leases of sessions that host owns
	// and of its own broker pseudo-session (BrokerSession(HostID)).
	HostID string
	// BrokerOnly keeps only leases of broker pseudo-sessions, of every
	// host (see IsBrokerSession).
	BrokerOnly bool
}

// Store persists sessions, leases, intents and the incident lock.
// Implementations MUST be safe for concurrent use and MUST NOT store secret
// values (they never receive any).
type Store interface {
	// CreateSession inserts s; it fails if the id exists.
	CreateSession(ctx context.Context, s Session) error
	// GetSession returns ErrNotFound (wrapped) for an unknown id.
	GetSession(ctx context.Context, id string) (Session, error)
	// ListSessions returns matching sessions ordered by CreatedAt.
	ListSessions(ctx context.Context, f SessionFilter) ([]Session, error)
	// UpdateSession replaces the stored session with s (matched by ID).
	UpdateSession(ctx context.Context, s Session) error
	// ActivateSession marks session id active if, and only if, it is
	// starting, in one statement. It returns ErrStateChanged (wrapped) when
	// the session is in another state (ended meanwhile, by revoke --all for
	// instance) and ErrNotFound (wrapped) when it does not exist.
	ActivateSession(ctx context.Context, id string) error

	// PutIntent inserts or replaces an intent.
	PutIntent(ctx context.Context, in Intent) error
	// DeleteIntent removes an intent; deleting a missing one is not an error.
	DeleteIntent(ctx context.Context, id string) error
	// ListIntents returns every unsettled intent ordered by CreatedAt.
	ListIntents(ctx context.Context) ([]Intent, error)

	// RecordLeases inserts the leases and deletes the intent with intentID
	// (if non-empty) in one transaction, so a crash leaves either the intent
	// or the leases, never neither.
	RecordLeases(ctx context.Context, intentID string, ls []Lease) error
	// UpdateLease replaces a stored lease (matched by ID).
	UpdateLease(ctx context.Context, l Lease) error
	// DeleteLease removes a lease; deleting a missing one is not an error.
	DeleteLease(ctx context.Context, id string) error
	// GetLease returns ErrNotFound (wrapped) for an unknown id.
	GetLease(ctx context.Context, id string) (Lease, error)
	// ListLeases returns the leases of one session, or of every session when
	// sessionID is empty, ordered by IssuedAt then ID.
	ListLeases(ctx context.Context, sessionID string) ([]Lease, error)
	// ListLeasesByState returns every lease in state st.
	ListLeasesByState(ctx context.Context, st LeaseState) ([]Lease, error)
	// FindLeases returns the leases matching f, ordered by IssuedAt then ID.
	FindLeases(ctx context.Context, f LeaseFilter) ([]Lease, error)

	// SetIncident persists the incident lock (replacing any earlier one).
	SetIncident(ctx context.Context, in Incident) error
	// GetIncident returns the active incident, or ok=false.
	GetIncident(ctx context.Context) (in Incident, ok bool, err error)
	// ClearIncident removes the lock.
	ClearIncident(ctx context.Context) error

	// Close releases the store.
	Close() error
}

// BrokerSessionID is the SessionID of leases the broker holds for itself
// rather than for a session (for example a Vault epoch token). No session row
// exists for it. In fleet mode each host has its own, BrokerSession(host).
const BrokerSessionID = "_broker"

// BrokerSession is the pseudo-session of the broker on host: BrokerSessionID
// for a single broker (host empty), "_broker/<host>" in a fleet, so that one
// broker's reaper and crash recovery never touch another's credentials.
func BrokerSession(host string) string {
	if host == "" {
		return BrokerSessionID
	}
	return BrokerSessionID + "/" + host
}

// IsBrokerSession reports whether id is a broker pseudo-session, of any
// host.
func IsBrokerSession(id string) bool {
	return id == BrokerSessionID || strings.HasPrefix(id, BrokerSessionID+"/")
}

// BrokerSessionHost returns the host of a broker pseudo-session ("" for
// BrokerSessionID), and ok=false when id is not one.
func BrokerSessionHost(id string) (host string, ok bool) {
	if id == BrokerSessionID {
		return "", true
	}
	host, ok = strings.CutPrefix(id, BrokerSessionID+"/")
	return host, ok
}

// Batcher is implemented by stores that can settle many records in one
// transaction; revoke --all uses it so that its bookkeeping does not grow
// with one commit per session, and a session start so that it commits
// once before its mints and once after, whatever its number of providers. Callers fall back to the one-by-one methods
// when a store lacks it.
type Batcher interface {
	// DeleteLeases removes the leases with ids (missing ones are ignored).
	DeleteLeases(ctx context.Context, ids []string) error
	// FinishSessions marks each of ids that is not ended yet as ended (if
	// it has no lease left) or ending, keeping an earlier end reason and
	// time, and returns the ids it marked ended.
	FinishSessions(ctx context.Context, ids []string, reason string, at time.Time) (ended []string, err error)

	// BeginSession is CreateSession(s) and PutIntent for each of ins in one
	// transaction: the session row and every intent of its start are
	// durable together, or nothing is written. A session start uses it so
	// that it commits once before its first mint, not once per provider.
	BeginSession(ctx context.Context, s Session, ins []Intent) error
	// RecordLeaseSets is RecordLeases for every set in one transaction:
	// every lease is inserted and every non-empty IntentID deleted, or
	// nothing changes (an id that already exists fails the whole call).
	RecordLeaseSets(ctx context.Context, sets []LeaseSet) error
}

// LeaseSet is what one intent produced: the leases to record and the
// intent they settle (empty: none).
type LeaseSet struct {
	IntentID string
	Leases   []Lease
}

// IncidentWatcher is implemented by stores that tell brokers at once when an
// incident is declared. In fleet mode the store is shared: SetIncident
// commits the lock and broadcasts it in one transaction, and every broker
// watching hears of it, wherever it runs.
type IncidentWatcher interface {
	// WatchIncident runs until ctx ends and then returns ctx's error. It
	// calls declared with the incident lock each time one is set (by any
	// broker sharing the store), and also right after it starts and after
	// every reconnection when a lock is in place then: a broker that was
	// cut off learns of an incident as soon as it is back. Calls are
	// sequential and declared MUST return quickly (hand the work off). The
	// same incident may be reported more than once. lost, if not nil, is
	// told why the watch was interrupted; the watch keeps reconnecting.
	WatchIncident(ctx context.Context, declared func(Incident), lost func(error)) error
}

// Host is one broker of a fleet as it last registered itself.
type Host struct {
	// ID is the broker's host id (broker.host_id; "" for a single broker).
	ID string
	// Fingerprints maps each provider the broker has configured to a digest
	// of that provider's non-secret config (configs.ProviderFingerprints).
	Fingerprints map[string]string
	// SeenAt is when the broker last registered (start, then every loop
	// tick).
	SeenAt time.Time
}

// HostRegistry is implemented by stores that keep a record of each broker
// sharing them, so that `status --all-hosts` can show every host's provider
// fingerprints and revoke --all can name the hosts it did not reach.
type HostRegistry interface {
	// PutHost inserts or replaces the record of h.ID.
	PutHost(ctx context.Context, h Host) error
	// ListHosts returns every recorded host ordered by ID.
	ListHosts(ctx context.Context) ([]Host, error)
}

// Locker is implemented by stores shared by many brokers (fleet mode) to
// serialise work that must have one writer at a time across all of them,
// such as rebuilding AWS's revocation policy on a role.
type Locker interface {
	// WithLock runs fn while holding the lock called name, which every
	// broker sharing the store respects, and returns fn's error. It waits
	// for a holder to finish (or ctx to end). The lock is released when fn
	// returns, and also if the holder's connection to the store is lost.
	WithLock(ctx context.Context, name string, fn func(ctx context.Context) error) error
}

// RenewalMarker is implemented by stores that can mark leases for early
// renewal in one statement, without rewriting the rest of each lease (a
// refresher may be rewriting it at the same moment). Callers fall back to
// UpdateLease when a store lacks it.
type RenewalMarker interface {
	// MarkRenewal sets NextAttempt to at on each lease of ids that is
	// active (missing or pending ones are skipped) and returns how many it
	// marked.
	MarkRenewal(ctx context.Context, ids []string, at time.Time) (int, error)
}
