// Package vault is the Vault provider: per-session child tokens of a broker
// "epoch" token, created through a token role that caps their policies, and
// secrets read with the session token so that revoking the token revokes
// every lease it created.
package vault

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/hostsdial"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Name is the provider name used in lease ids, config and audit records.
const Name = "vault"

// Lease kinds.
const (
	KindToken  = "token"
	KindSecret = "secret"
	KindEpoch  = "epoch"
)

// Metadata keys set on every token the broker creates, so Vault's own audit
// log names the session and the reconciler can find tokens after a crash.
const (
	metaSession = "credbroker_session"
	metaRole    = "credbroker_role"
)

// Files the provider writes into the session dir.
const (
	TokenFile  = "vault/token"
	secretsDir = "vault/secrets/"
	caFile     = "vault/ca.pem"
)

// Provider mints Vault tokens and secrets.
type Provider struct {
	cfg     configs.VaultProvider
	client  *api.Client       // authenticated as the broker
	journal providers.Journal // records the epoch tokens
	log     *slog.Logger
	now     func() time.Time
	caPEM   []byte
	// self is the broker's pseudo-session its epochs are recorded under
	// (leases.BrokerSession of its host).
	self string
	// dial, if set, is the Vault client's dialer (WithDial).
	dial hostsdial.DialFunc

	// epochSessions is how many session tokens one epoch takes before the
	// next session starts a new one (WithEpochSessions).
	epochSessions int

	mu    sync.Mutex
	epoch *epoch
	// full holds the epochs this process filled (and that still live), so
	// RevokeAll reaches them even when the store cannot be read.
	full []*epoch
}

// DefaultEpochSessions is how many session tokens an epoch takes before
// the broker starts another: revoke --all revokes each epoch's tree with
// its own call, up to four at once, and Vault walks a tree in one
// goroutine, so trees of this size let it revoke 10,000 sessions on
// several cores (docs/performance.md).
const DefaultEpochSessions = 2500

// Option configures New.
type Option func(*Provider)

// WithHostID records the epochs as the broker host id's own
// (leases.BrokerSession(id)), in the store and in Vault's token metadata,
// so brokers sharing a store (fleet mode) each recover only their own after
// a crash. RevokeAll still revokes every host's.
func WithHostID(id string) Option {
	return func(p *Provider) { p.self = leases.BrokerSession(id) }
}

// WithEpochSessions sets how many session tokens an epoch takes before the
// next session starts a new one (DefaultEpochSessions when n < 1).
func WithEpochSessions(n int) Option {
	return func(p *Provider) {
		if n > 0 {
			p.epochSessions = n
		}
	}
}

// WithDial makes the provider's Vault client dial with d (the daemon
// passes one that maps broker.egress.hosts names); nil keeps the default.
func WithDial(d hostsdial.DialFunc) Option {
	return func(p *Provider) { p.dial = d }
}

type epoch struct {
	token     secret.Value
	accessor  string
	expiresAt time.Time
	sessions  int // session tokens created with it
}

var _ providers.Provider = (*Provider)(nil)

// New builds the provider and logs the broker in. It does not fail when
// Vault is unreachable at start (minting fails with a clear error then, and
// revocations are retried), but it does fail on configuration errors.
func New(ctx context.Context, cfg configs.VaultProvider, journal providers.Journal, log *slog.Logger, opts ...Option) (*Provider, error) {
	if log == nil {
		log = slog.Default()
	}
	vc := api.DefaultConfig()
	if vc.Error != nil {
		return nil, fmt.Errorf("vault: client config: %w", vc.Error)
	}
	vc.Address = cfg.Address
	vc.Timeout = 30 * time.Second
	vc.MaxRetries = 2
	var caPEM []byte
	if cfg.CACert != "" {
		if err := vc.ConfigureTLS(&api.TLSConfig{CACert: cfg.CACert}); err != nil {
			return nil, fmt.Errorf("vault: ca_cert %s: %w", cfg.CACert, err)
		}
		b, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("vault: read ca_cert: %w", err)
		}
		caPEM = b
	}
	p := &Provider{cfg: cfg, journal: journal, log: log.With("provider", Name), now: time.Now, caPEM: caPEM,
		self: leases.BrokerSessionID, epochSessions: DefaultEpochSessions}
	for _, o := range opts {
		o(p)
	}
	if tr, ok := vc.HttpClient.Transport.(*http.Transport); ok && p.dial != nil {
		tr.DialContext = p.dial
	}
	c, err := api.NewClient(vc)
	if err != nil {
		return nil, fmt.Errorf("vault: client: %w", err)
	}
	c.ClearToken() // never pick up the environment's VAULT_TOKEN implicitly
	if cfg.Namespace != "" {
		c.SetNamespace(cfg.Namespace)
	}
	p.client = c
	if err := p.login(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Check verifies that Vault answers, the broker's token is valid and the
// token role exists, with errors that say how to fix each.
func (p *Provider) Check(ctx context.Context) error {
	if _, err := p.client.Auth().Token().LookupSelfWithContext(ctx); err != nil {
		return fmt.Errorf("vault: the broker's token does not work at %s: %w", p.cfg.Address, describe(err))
	}
	role, err := p.client.Logical().ReadWithContext(ctx, "auth/token/roles/"+p.cfg.TokenRole)
	if err != nil {
		return fmt.Errorf("vault: read token role %q: %w", p.cfg.TokenRole, describe(err))
	}
	if role == nil {
		return fmt.Errorf("vault: token role %q does not exist; create it with "+
			"'vault write auth/token/roles/%s allowed_policies=<the roles' policies> orphan=false renewable=true'",
			p.cfg.TokenRole, p.cfg.TokenRole)
	}
	return nil
}

func (p *Provider) login(ctx context.Context) error {
	a := p.cfg.Auth
	switch {
	case a.AppRole != nil:
		sid, err := readSecretSource(a.AppRole.SecretIDFile, a.AppRole.SecretIDEnv)
		if err != nil {
			return fmt.Errorf("vault: approle secret_id: %w", err)
		}
		sec, err := p.client.Logical().WriteWithContext(ctx, "auth/"+a.AppRole.Mount+"/login",
			map[string]any{"role_id": a.AppRole.RoleID, "secret_id": sid.Reveal()})
		if err != nil {
			return fmt.Errorf("vault: approle login at auth/%s: %w", a.AppRole.Mount, describe(err))
		}
		if sec == nil || sec.Auth == nil {
			return errors.New("vault: approle login returned no token")
		}
		p.client.SetToken(sec.Auth.ClientToken)
	default:
		tok, err := readSecretSource(a.TokenFile, a.TokenEnv)
		if err != nil {
			return fmt.Errorf("vault: broker token: %w", err)
		}
		p.client.SetToken(tok.Reveal())
	}
	return nil
}

func readSecretSource(file, env string) (secret.Value, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return secret.Value{}, fmt.Errorf("read %s: %w", file, err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return secret.Value{}, fmt.Errorf("%s is empty", file)
		}
		return secret.New(v), nil
	}
	v := strings.TrimSpace(os.Getenv(env))
	if v == "" {
		return secret.Value{}, fmt.Errorf("environment variable %s is not set; export it or use token_file", env)
	}
	return secret.New(v), nil
}

// describe turns a Vault API error into a short message without request
// bodies; Vault never echoes tokens in error texts, but we also drop URLs'
// query strings and keep only status and Vault's error list.
func describe(err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return fmt.Errorf("vault answered %d: %s", re.StatusCode, strings.Join(re.Errors, "; "))
	}
	return err
}

// isStatus reports whether err is a Vault response error with one of codes.
func isStatus(err error, codes ...int) bool {
	var re *api.ResponseError
	if !errors.As(err, &re) {
		return false
	}
	for _, c := range codes {
		if re.StatusCode == c {
			return true
		}
	}
	return false
}
