package awssts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/internal/secret"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// Mint assumes the role for the session. Nothing needs cleaning up on
// failure: a failed AssumeRole issued nothing.
func (p *Provider) Mint(ctx context.Context, s providers.Session, role configs.Role) (providers.Grant, error) {
	if role.AWS == nil {
		return providers.Grant{}, fmt.Errorf("aws: role %s has no aws block", role.Name)
	}
	if err := p.checkMintable(role.AWS.RoleARN); err != nil {
		return providers.Grant{}, err
	}
	creds, err := p.assume(ctx, s, role)
	if err != nil {
		return providers.Grant{}, err
	}
	l := leases.Lease{
		ID:         leaseID(s.ID),
		SessionID:  s.ID,
		Provider:   Name,
		Kind:       KindSTS,
		ExternalID: aws.ToString(creds.AccessKeyId),
		IssuedAt:   creds.issued,
		ExpiresAt:  creds.expires,
		Renewable:  true,
		State:      leases.LeaseActive,
		Data:       map[string]string{"role": role.Name, "role_arn": role.AWS.RoleARN},
	}
	maps.Copy(l.Data, p.rev.leaseData(ctx))
	return providers.Grant{Leases: []leases.Lease{l}, Files: p.files(creds.Credentials), Env: p.env(), Secrets: issued(creds.Credentials)}, nil
}

// RenewAfter re-mints at 80 % of the credentials' life.
func (p *Provider) RenewAfter() float64 { return 0.8 }

// Renew re-mints: STS credentials cannot be extended. The lease keeps its
// id (revocation is per session) and gets the new key id and expiry.
func (p *Provider) Renew(ctx context.Context, s providers.Session, l leases.Lease, _ providers.FileReader) (providers.Grant, error) {
	if !p.now().Before(s.ExpiresAt) {
		return providers.Grant{}, providers.ErrNotRenewable
	}
	role, ok := p.roles[l.Data["role"]]
	if !ok || role.AWS == nil {
		return providers.Grant{}, fmt.Errorf("aws: renew %s: role %q is no longer configured", l.ID, l.Data["role"])
	}
	if err := p.checkMintable(role.AWS.RoleARN); err != nil {
		return providers.Grant{}, err
	}
	creds, err := p.assume(ctx, s, role)
	if err != nil {
		return providers.Grant{}, err
	}
	nl := l
	nl.Data = maps.Clone(l.Data)
	if nl.Data == nil {
		nl.Data = map[string]string{}
	}
	maps.Copy(nl.Data, p.rev.leaseData(ctx))
	nl.ExternalID = aws.ToString(creds.AccessKeyId)
	nl.IssuedAt = creds.issued
	nl.ExpiresAt = creds.expires
	return providers.Grant{Leases: []leases.Lease{nl}, Files: p.files(creds.Credentials), Secrets: issued(creds.Credentials)}, nil
}

// callTimeout bounds one STS call, the SDK's retries included (as the
// Vault and Kubernetes clients bound theirs): without it a black-holed
// connection held a session start for three 30 s attempts.
const callTimeout = 30 * time.Second

// stsCreds are credentials STS issued, with their life by the broker's
// clock (see providers.ExpiresBy).
type stsCreds struct {
	*ststypes.Credentials
	issued, expires time.Time
}

func (p *Provider) assume(ctx context.Context, s providers.Session, role configs.Role) (stsCreds, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	start := p.now()
	secs := durationSeconds(start, s.ExpiresAt, role.AWS.MaxDuration.D())
	in := &sts.AssumeRoleInput{
		RoleArn:         aws.String(role.AWS.RoleARN),
		RoleSessionName: aws.String("credbroker-" + s.ID),
		DurationSeconds: aws.Int32(secs),
		SourceIdentity:  aws.String(s.ID),
		Tags: []ststypes.Tag{
			{Key: aws.String("credbroker:session"), Value: aws.String(s.ID)},
			{Key: aws.String("credbroker:role"), Value: aws.String(role.Name)},
		},
	}
	if role.AWS.SessionPolicy != "" {
		in.Policy = aws.String(role.AWS.SessionPolicy)
	}
	if role.AWS.ExternalID != "" {
		in.ExternalId = aws.String(role.AWS.ExternalID)
	}
	for _, arn := range role.AWS.PolicyARNs {
		in.PolicyArns = append(in.PolicyArns, ststypes.PolicyDescriptorType{Arn: aws.String(arn)})
	}
	var creds *ststypes.Credentials
	if p.oidc != nil {
		c, err := p.assumeWithWebIdentity(ctx, s, role, in)
		if err != nil {
			return stsCreds{}, err
		}
		creds = c
	} else {
		out, err := p.sts.AssumeRole(ctx, in, p.rev.assumeOptions(s.ID)...)
		if err != nil {
			return stsCreds{}, fmt.Errorf("aws: assume role %s: %w", role.AWS.RoleARN, describe(err))
		}
		creds = out.Credentials
	}
	if creds == nil || creds.AccessKeyId == nil {
		return stsCreds{}, errors.New("aws: assume role: STS returned no credentials")
	}
	exp := providers.ExpiresBy(start, time.Duration(secs)*time.Second, aws.ToTime(creds.Expiration))
	return stsCreds{Credentials: creds, issued: start, expires: exp}, nil
}

// assumeWithWebIdentity mints with a JWT the broker signed for the session
// (source identity and session tags travel as claims in it).
func (p *Provider) assumeWithWebIdentity(ctx context.Context, s providers.Session, role configs.Role, in *sts.AssumeRoleInput) (*ststypes.Credentials, error) {
	tok, err := p.oidc.Token(s.ID, role.Name)
	if err != nil {
		return nil, err
	}
	out, err := p.sts.AssumeRoleWithWebIdentity(ctx, &sts.AssumeRoleWithWebIdentityInput{
		RoleArn:          in.RoleArn,
		RoleSessionName:  in.RoleSessionName,
		DurationSeconds:  in.DurationSeconds,
		Policy:           in.Policy,
		PolicyArns:       in.PolicyArns,
		WebIdentityToken: aws.String(tok.Reveal()),
	}, p.rev.assumeOptions(s.ID)...)
	if err != nil {
		return nil, fmt.Errorf("aws: assume role %s with web identity: %w", role.AWS.RoleARN, describe(err))
	}
	return out.Credentials, nil
}

// durationSeconds is the session's remaining life clamped to the role's cap
// and to STS's 900 s minimum (a shorter session still gets 900 s
// credentials; the broker revokes them when the session ends).
func durationSeconds(now, end time.Time, maxDur time.Duration) int32 {
	d := end.Sub(now)
	d = min(d, maxDur)
	d = max(d, configs.MinSTSDuration)
	return int32((d + time.Second - 1) / time.Second)
}

// describe keeps STS's error code and message, and names the size problem
// the issue asks to report clearly.
func describe(err error) error {
	var pt *ststypes.PackedPolicyTooLargeException
	if errors.As(err, &pt) {
		return fmt.Errorf("the session policy and tags are too large after STS packs them (PackedPolicyTooLarge): shorten the role's policy or use policy_arns: %w", err)
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("%s: %s", ae.ErrorCode(), ae.ErrorMessage())
	}
	return err
}

// issued lists the parts of STS credentials: the secret ones for the leak
// guard, and the access key id (an identifier, not a secret) for proxy
// delivery, which replaces it too.
func issued(c *ststypes.Credentials) []providers.IssuedSecret {
	exp := aws.ToTime(c.Expiration)
	return []providers.IssuedSecret{
		{Value: secret.New(aws.ToString(c.AccessKeyId)), What: "aws access key id", Expires: exp, Name: providers.SecretAWSAccessKeyID, Public: true},
		{Value: secret.New(aws.ToString(c.SecretAccessKey)), What: "aws secret access key", Expires: exp, Name: providers.SecretAWSSecretKey},
		{Value: secret.New(aws.ToString(c.SessionToken)), What: "aws session token", Expires: exp, Name: providers.SecretAWSSessionToken},
	}
}

func leaseID(sessionID string) string { return Name + "/" + KindSTS + "/" + sessionID }

// processCreds is the credential_process output format.
type processCreds struct {
	Version         int
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string
	SessionToken    string
	Expiration      string
}

func (p *Provider) files(c *ststypes.Credentials) map[string]secret.Value {
	pc, _ := json.MarshalIndent(processCreds{
		Version: 1, AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken: aws.ToString(c.SessionToken), Expiration: aws.ToTime(c.Expiration).UTC().Format(time.RFC3339),
	}, "", "  ")
	var ini strings.Builder
	fmt.Fprintf(&ini, "# credbroker session credentials (static copy for tools that cannot run\n")
	fmt.Fprintf(&ini, "# credential_process); rewritten on every refresh, expires %s.\n", aws.ToTime(c.Expiration).UTC().Format(time.RFC3339))
	fmt.Fprintf(&ini, "[%s]\naws_access_key_id = %s\naws_secret_access_key = %s\naws_session_token = %s\n",
		StaticProfile, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken))
	return map[string]secret.Value{
		ProcessFile:     secret.FromBytes(append(pc, '\n')),
		CredentialsFile: secret.New(ini.String()),
		ConfigFile:      secret.New(p.configFile()),
	}
}

// configFile is aws/config. Its default profile reads credentials.json
// through credential_process, so SDKs and the AWS CLI pick up refreshed
// credentials after Expiration without a restart. The path comes from
// CREDBROKER_SESSION_DIR, which the exec wrapper sets to wherever the dir
// is mounted.
func (p *Provider) configFile() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# credbroker session AWS config: generated, do not edit.\n")
	fmt.Fprintf(&b, "[profile %s]\n", Profile)
	fmt.Fprintf(&b, "credential_process = sh -c 'cat \"$CREDBROKER_SESSION_DIR/%s\"'\n", ProcessFile)
	fmt.Fprintf(&b, "region = %s\n\n", p.cfg.Region)
	fmt.Fprintf(&b, "[profile %s]\nregion = %s\n", StaticProfile, p.cfg.Region)
	return b.String()
}

func (p *Provider) env() map[string]secret.Value {
	const dir = "${CREDBROKER_SESSION_DIR}/"
	env := map[string]secret.Value{
		"AWS_CONFIG_FILE":             secret.New(dir + ConfigFile),
		"AWS_SHARED_CREDENTIALS_FILE": secret.New(dir + CredentialsFile),
		"AWS_PROFILE":                 secret.New(Profile),
		"AWS_REGION":                  secret.New(p.cfg.Region),
		"AWS_DEFAULT_REGION":          secret.New(p.cfg.Region),
		"AWS_SDK_LOAD_CONFIG":         secret.New("1"),
	}
	if p.cfg.EndpointURL != "" {
		env["AWS_ENDPOINT_URL"] = secret.New(p.cfg.EndpointURL)
	}
	return env
}
