// Package providers defines the seam between the broker and each credential
// backend (Vault, AWS STS, Kubernetes). A provider mints, renews and revokes;
// it never writes files and never touches the lease store.
package providers

import (
	"context"
	"errors"
	"time"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
)

// ErrAlreadyRevoked may be returned (wrapped) by Revoke when the backend says
// the credential no longer exists; callers treat it as success.
var ErrAlreadyRevoked = errors.New("already revoked")

// Session is what a provider knows of the session it mints for.
type Session struct {
	ID        string
	Role      string
	TTL       time.Duration
	ExpiresAt time.Time
}

// Grant is what a mint or renewal produced.
type Grant struct {
	// Leases to record before anything reaches the sandbox.
	Leases []leases.Lease
	// Files to write into the session dir, by slash-separated relative path
	// (for example "vault/token"). A renewal lists only files that changed.
	Files map[string]secret.Value
	// Env is added to the session's env file.
	Env map[string]secret.Value
	// Secrets are the raw secret values issued (tokens, keys), so the leak
	// guard can fingerprint them; each also appears somewhere in Files.
	Secrets []IssuedSecret
	// UpstreamCA is the PEM bundle the egress gateway trusts for this
	// provider's endpoints when it delivers the grant by proxy (the
	// configured Vault CA, the cluster's CA); nil means the system roots.
	UpstreamCA []byte
}

// Names of IssuedSecret for proxy delivery (docs/proxy-mode.md): the
// broker replaces each named value by a placeholder of the same shape
// wherever it appears in Files and Env, and the gateway puts the real one
// on requests to the provider's endpoints.
const (
	SecretVaultToken      = "vault-token"
	SecretAWSAccessKeyID  = "aws-access-key-id"
	SecretAWSSecretKey    = "aws-secret-access-key"
	SecretAWSSessionToken = "aws-session-token"
	SecretKubeToken       = "kube-token"
	// SecretInjectPrefix + the inject entry's env is the name of a value
	// read for roles.<role>.inject.
	SecretInjectPrefix = "inject:"
)

// IssuedSecret is one secret value a grant carries.
type IssuedSecret struct {
	Value   secret.Value
	What    string // e.g. "vault token"
	Expires time.Time
	// Name says what the value is to proxy delivery (one of the Secret*
	// names); "" for values it does not swap.
	Name string
	// Public marks a value that identifies rather than authenticates (an
	// AWS access key id): proxy delivery replaces it, the leak guard does
	// not look for it.
	Public bool
}

// Provider is one credential backend.
//
// Contract:
//   - Mint MUST either return a Grant whose Leases name every credential it
//     created, or an error after revoking whatever it created. When that
//     revocation fails too, it returns the error together with a Grant whose
//     Leases name what is still valid, and the caller keeps them pending.
//     It MUST tag what it creates with the session id so FindOrphans can
//     locate it after a crash.
//   - Renew extends one lease up to the session's end; it returns the
//     updated lease and the files to rewrite, if any. A lease that cannot be
//     extended returns ErrNotRenewable.
//   - Revoke MUST be idempotent: revoking a revoked or expired lease succeeds.
//   - RevokeAll is given every lease of this provider that the store holds
//     (every host's, the broker's own included). It makes as many of them
//     invalid as its backend calls can, in as few calls as the backend
//     allows, and returns the ids of the leases those calls covered, also
//     with an error. The broker forgets only the covered leases: the others
//     are revoked lease by lease (this host's) or left to the host that
//     issued them (another broker of a fleet, whose provider config may
//     differ). It MUST NOT report a lease as covered that its calls cannot
//     have reached (for example a key minted through another account).
//   - FindOrphans returns leases the backend holds for sessionID that are
//     not in known (used by the reconciler after a crash).
type Provider interface {
	Name() string
	Mint(ctx context.Context, s Session, role configs.Role) (Grant, error)
	Renew(ctx context.Context, s Session, l leases.Lease, files FileReader) (Grant, error)
	Revoke(ctx context.Context, l leases.Lease) error
	RevokeAll(ctx context.Context, ls []leases.Lease) (covered []string, err error)
	FindOrphans(ctx context.Context, sessionID string, known []leases.Lease) ([]leases.Lease, error)
}

// Journal is the broker's write-ahead record, for credentials a provider
// issues to the broker itself rather than to a session (Vault's epoch
// token). Such a credential follows the rules of every other one: an
// intent before the call that creates it, a lease after. The broker
// implements it over its lease store and audit log, so providers never
// touch the store: a failure comes back wrapped in the broker's store
// error, not as a provider error.
type Journal interface {
	// Intend records that a credential is about to be created.
	Intend(ctx context.Context, in leases.Intent) error
	// Record stores the created credential's leases and settles the
	// intent in one step.
	Record(ctx context.Context, intentID string, ls []leases.Lease) error
	// Abandon settles an intent whose credential was not created.
	Abandon(ctx context.Context, intentID string) error
}

// EndedSession is a session the broker's store holds as ending or ended.
type EndedSession struct {
	ID        string
	Role      string
	ExpiresAt time.Time
	EndedAt   time.Time
}

// Revocations is implemented by the broker's Journal for providers whose
// revocation is one document rebuilt from what the store knows (AWS's IAM
// deny policy) rather than one backend call per credential. A provider
// that receives one still never touches the store.
type Revocations interface {
	// EndedSessions returns the sessions of every broker sharing the store
	// that are ending or ended and whose ExpiresAt is after expiresAfter.
	EndedSessions(ctx context.Context, expiresAfter time.Time) ([]EndedSession, error)
	// WithLock runs fn holding the lock called name: one holder at a time
	// among all brokers sharing the store (a fleet's PostgreSQL advisory
	// lock; a process mutex for a single broker).
	WithLock(ctx context.Context, name string, fn func(ctx context.Context) error) error
	// RenewEarly asks the refresher to renew, at or after at, the active
	// leases of provider held by the live sessions of the named roles, and
	// returns how many leases it marked.
	RenewEarly(ctx context.Context, provider string, roles []string, at time.Time) (int, error)
}

// ExpiresBy is when a credential asked for at start, by the broker's
// clock, to live d expires by that clock: start + d, or the expiry the
// server reported if that is earlier (the server shortened it) and still
// after start. A reported expiry is the server's clock: read alone, a
// broker clock ahead of it by more than d saw every credential expired at
// birth and re-minted it on every refresh tick, and one behind it renewed
// only after the credential had lapsed at the server.
func ExpiresBy(start time.Time, d time.Duration, reported time.Time) time.Time {
	exp := start.Add(d)
	if reported.After(start) && reported.Before(exp) {
		return reported
	}
	return exp
}

// IDs returns the ids of ls, for RevokeAll's covered list.
func IDs(ls []leases.Lease) []string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.ID
	}
	return ids
}

// RenewPolicy is implemented by providers whose leases should be renewed
// at another point of their life than the default two thirds (Vault's own
// lifetime watcher renews at about two thirds; STS credentials, which are
// re-minted, at 80 %).
type RenewPolicy interface {
	// RenewAfter is the fraction of a lease's life after which it is renewed.
	RenewAfter() float64
}

// Maintainer is implemented by providers with background work that keeps
// session starts short (the Kubernetes provider checks the Roles its roles
// bind here rather than on each mint). The broker's loop calls Maintain on
// every tick, with a bounded context; it MUST return quickly when nothing
// is due, and its error is logged, never fatal.
type Maintainer interface {
	Maintain(ctx context.Context) error
}

// Notice is returned (possibly wrapped) by Revoke or RevokeAll when the
// revocation succeeded with a side effect an operator must know of, such as
// AWS's fallback from per-session denies to a TokenIssueTime cut-off. The
// broker treats it as success and writes Msg into the audit log.
type Notice struct{ Msg string }

func (n *Notice) Error() string { return n.Msg }

// ErrNotRenewable is returned by Renew when a lease cannot be extended.
var ErrNotRenewable = errors.New("lease not renewable")

// FileReader reads a file the provider earlier put in a session dir (for
// example the token it must present to renew itself).
type FileReader interface {
	ReadFile(rel string) (secret.Value, error)
}
