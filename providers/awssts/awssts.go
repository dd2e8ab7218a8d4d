// Package awssts is the AWS provider: per-session temporary credentials from
// STS AssumeRole, narrowed by a session policy and stamped with the session
// id (SourceIdentity, session tags, RoleSessionName). STS credentials cannot
// be deleted, so revocation is by policy (IAM) or by the server's own token
// revocation (MinIO); see revoke.go.
package awssts

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/hostsdial"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Name is the provider name in lease ids, config and audit records.
const Name = "aws"

// KindSTS is the lease kind of a session's STS credentials. One lease per
// session: a refresh re-mints and updates it in place.
const KindSTS = "sts"

// Files the provider writes into the session dir.
const (
	ConfigFile      = "aws/config"
	CredentialsFile = "aws/credentials"
	ProcessFile     = "aws/credentials.json"
)

// Profiles written into aws/config: the default one refreshes itself
// through credential_process; the static one is for tools that cannot run
// a process.
const (
	Profile       = "credbroker"
	StaticProfile = "credbroker-static"
)

// STSAPI is the part of the STS client the provider uses.
type STSAPI interface {
	AssumeRole(ctx context.Context, in *sts.AssumeRoleInput, opts ...func(*sts.Options)) (*sts.AssumeRoleOutput, error)
	AssumeRoleWithWebIdentity(ctx context.Context, in *sts.AssumeRoleWithWebIdentityInput, opts ...func(*sts.Options)) (*sts.AssumeRoleWithWebIdentityOutput, error)
}

// IAMAPI is the part of the IAM client the IAM revoker uses.
type IAMAPI interface {
	GetRolePolicy(ctx context.Context, in *iam.GetRolePolicyInput, opts ...func(*iam.Options)) (*iam.GetRolePolicyOutput, error)
	PutRolePolicy(ctx context.Context, in *iam.PutRolePolicyInput, opts ...func(*iam.Options)) (*iam.PutRolePolicyOutput, error)
}

// revoker makes credentials of one session, or all, invalid.
type revoker interface {
	// revokeSession denies credentials of sessionID for role roleARN ("" means
	// every configured role) that expire at or before until.
	revokeSession(ctx context.Context, sessionID, roleARN string, until time.Time) error
	// revokeAll makes every credential it can reach invalid and returns
	// the ids of the leases of ls that its calls covered.
	revokeAll(ctx context.Context, ls []leases.Lease) ([]string, error)
	// assumeOptions adds what the revoker needs to AssumeRole.
	assumeOptions(sessionID string) []func(*sts.Options)
	// leaseData is what a lease must carry for revokeAll to tell whether
	// it covers it (MinIO: the parent user of the session's token).
	leaseData(ctx context.Context) map[string]string
	// mintableFrom is when minting for roleARN may resume after a cut-off
	// (revokeAll's, or IAM's overflow fallback): credentials issued before
	// then would be denied at once (zero: at any time).
	mintableFrom(roleARN string) time.Time
}

// Provider mints AWS credentials.
type Provider struct {
	cfg   configs.AWSProvider
	roles map[string]configs.Role
	aws   aws.Config
	sts   STSAPI
	rev   revoker
	oidc  *Issuer // set with web_identity
	log   *slog.Logger
	now   func() time.Time
	mu    sync.Mutex // serialises revocation policy updates
}

var _ providers.Provider = (*Provider)(nil)

// Option configures New.
type Option func(*newOptions)

type newOptions struct {
	dial   hostsdial.DialFunc
	ledger providers.Revocations
	now    func() time.Time
}

// WithClock makes the provider read the time from now (tests move the
// broker's clock past a cut-off); nil keeps time.Now.
func WithClock(now func() time.Time) Option {
	return func(o *newOptions) { o.now = now }
}

// WithRevocations hands the IAM revoker the broker's view of the store: it
// then rebuilds each role's deny policy from the store's ended sessions
// under a fleet-wide lock, and has live sessions re-minted after an
// overflow's cut-off. nil keeps the policy's own read-modify-write (tools,
// tests).
func WithRevocations(r providers.Revocations) Option {
	return func(o *newOptions) { o.ledger = r }
}

// WithDial makes the provider's AWS clients dial with d (the daemon passes
// one that maps broker.egress.hosts names); nil keeps the default.
func WithDial(d hostsdial.DialFunc) Option {
	return func(o *newOptions) { o.dial = d }
}

// New builds the provider. The broker's own AWS identity comes from the
// SDK's default chain (environment, profile, instance role ...).
func New(ctx context.Context, cfg configs.AWSProvider, roles map[string]configs.Role, log *slog.Logger, options ...Option) (*Provider, error) {
	if log == nil {
		log = slog.Default()
	}
	var o newOptions
	for _, f := range options {
		f(&o)
	}
	opts := []func(*config.LoadOptions) error{config.WithRegion(cfg.Region)}
	if o.dial != nil {
		opts = append(opts, config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.DialContext = o.dial
		})))
	}
	if cfg.Profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(cfg.Profile))
	}
	ac, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("aws: load the broker's AWS configuration: %w", err)
	}
	stsClient := sts.NewFromConfig(ac, func(o *sts.Options) {
		if cfg.STSEndpoint != "" {
			o.BaseEndpoint = aws.String(cfg.STSEndpoint)
		}
	})
	p := &Provider{cfg: cfg, roles: roles, aws: ac, sts: stsClient, log: log.With("provider", Name), now: time.Now}
	if o.now != nil {
		p.now = o.now
	}
	if w := cfg.WebIdentity; w != nil {
		iss, err := NewIssuer(*w)
		if err != nil {
			return nil, err
		}
		if err := iss.Start(); err != nil {
			return nil, err
		}
		p.oidc = iss
	}
	switch cfg.Revocation {
	case configs.RevokeMinIOTokens:
		m := &minioRevoker{endpoint: cfg.STSEndpoint, region: cfg.Region, creds: ac.Credentials, hc: httpClient(ac, o.dial)}
		if w := cfg.WebIdentity; w != nil {
			m.user = minioOpenIDParent(w.Subject, w.Issuer)
		}
		p.rev = m
	default:
		iamClient := iam.NewFromConfig(ac, func(o *iam.Options) {
			// IAM is a global service signed for us-east-1 in the aws
			// partition, whatever region the broker's sessions use.
			o.Region = "us-east-1"
			if cfg.IAMEndpoint != "" {
				o.BaseEndpoint = aws.String(cfg.IAMEndpoint)
			}
		})
		p.rev = &iamRevoker{iam: iamClient, roles: roleARNs(roles), now: p.now, log: p.log,
			ledger: o.ledger, roleNames: roleNamesByARN(roles)}
	}
	return p, nil
}

// Close stops the web identity discovery server, if any.
func (p *Provider) Close() error {
	if p.oidc != nil {
		return p.oidc.Close()
	}
	return nil
}

// Name implements providers.Provider.
func (p *Provider) Name() string { return Name }

// Check verifies that the broker has AWS credentials at all (with web
// identity, only revocation needs them).
func (p *Provider) Check(ctx context.Context) error {
	if p.oidc != nil && p.cfg.Revocation == "" {
		return nil
	}
	if _, err := p.aws.Credentials.Retrieve(ctx); err != nil {
		return fmt.Errorf("aws: the broker has no AWS credentials (environment, profile or instance role): %w", err)
	}
	return nil
}

func roleARNs(roles map[string]configs.Role) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range roles {
		if r.AWS != nil && !seen[r.AWS.RoleARN] {
			seen[r.AWS.RoleARN] = true
			out = append(out, r.AWS.RoleARN)
		}
	}
	return out
}
