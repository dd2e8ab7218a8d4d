package configs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"
)

// AWS revocation methods (providers.aws.revocation).
const (
	// RevokeIAMDenyPolicy keeps a Deny policy on each assumed role,
	// conditioned on aws:SourceIdentity (one session) or aws:TokenIssueTime
	// (revoke --all).
	RevokeIAMDenyPolicy = "iam-deny-policy"
	// RevokeMinIOTokens uses MinIO's STS token revoke type and its admin
	// API's revoke-tokens.
	RevokeMinIOTokens = "minio-revoke-tokens"
)

// STS limits.
const (
	// MinSTSDuration is STS's shortest credential life.
	MinSTSDuration = 15 * time.Minute
	// MaxSessionPolicyChars is STS's limit on an inline session policy's
	// plaintext.
	MaxSessionPolicyChars = 2048
)

// AWSProvider is how the broker reaches STS (and IAM, for revocation).
// The broker's own identity comes from the AWS SDK's default chain
// (environment, shared config Profile, instance role...).
type AWSProvider struct {
	// Region for STS and IAM calls and the sandbox's AWS_REGION.
	Region string `yaml:"region"`
	// Profile selects a shared-config profile for the broker's identity.
	Profile string `yaml:"profile"`
	// STSEndpoint overrides the STS URL (S3-compatible STS servers, tests).
	STSEndpoint string `yaml:"sts_endpoint"`
	// IAMEndpoint overrides the IAM URL (tests).
	IAMEndpoint string `yaml:"iam_endpoint"`
	// EndpointURL is written to the sandbox as AWS_ENDPOINT_URL (for
	// S3-compatible servers such as MinIO).
	EndpointURL string `yaml:"endpoint_url"`
	// Revocation is iam-deny-policy (AWS) or minio-revoke-tokens (MinIO).
	Revocation string `yaml:"revocation"`
	// WebIdentity, when set, makes the broker mint with
	// AssumeRoleWithWebIdentity and a JWT it signs itself: no long-lived
	// AWS keys on the host for minting.
	WebIdentity *AWSWebIdentity `yaml:"web_identity"`
}

// AWSWebIdentity is the broker's own OIDC issuer for STS web identity.
type AWSWebIdentity struct {
	// Issuer is the issuer URL (the JWT's iss); OIDC discovery and JWKS are
	// served below it. AWS must be able to fetch them (https, public).
	Issuer string `yaml:"issuer"`
	// Listen is the host:port the broker serves discovery and JWKS on.
	Listen string `yaml:"listen"`
	// KeyFile holds the RSA signing key (PEM); created 0600 if missing
	// (default <state_dir>/oidc-signing-key.pem).
	KeyFile string `yaml:"key_file"`
	// Audience is the JWT's aud (default sts.amazonaws.com).
	Audience string `yaml:"audience"`
	// Subject is the JWT's sub, the broker's identity in trust policies
	// (default credbroker). The session id travels in other claims.
	Subject string `yaml:"subject"`
	// TokenTTL is the JWT's life (default 5m).
	TokenTTL Duration `yaml:"token_ttl"`
	// Claims are extra string claims (for example MinIO's policy claim).
	Claims map[string]string `yaml:"claims"`
}

// AWSRole is a role's AWS block.
type AWSRole struct {
	// RoleARN is assumed for each session.
	RoleARN string `yaml:"role_arn"`
	// Policy is an inline session policy (JSON) that narrows the role.
	Policy string `yaml:"policy"`
	// PolicyFile holds the session policy instead of Policy.
	PolicyFile string `yaml:"policy_file"`
	// PolicyARNs are managed session policies.
	PolicyARNs []string `yaml:"policy_arns"`
	// ExternalID is passed to AssumeRole when the trust policy needs one.
	ExternalID string `yaml:"external_id"`
	// MaxDuration caps DurationSeconds (the role's MaxSessionDuration;
	// default 1h). Sessions longer than this are refreshed by re-minting.
	MaxDuration Duration `yaml:"max_duration"`
	// Delivery overrides the role's delivery for the STS credentials.
	Delivery string `yaml:"delivery"`

	// SessionPolicy is the compacted session policy from Policy or
	// PolicyFile, filled in by validation.
	SessionPolicy string `yaml:"-"`
}

func (a *AWSProvider) applyDefaults() {
	if a.Revocation == "" {
		a.Revocation = RevokeIAMDenyPolicy
	}
	if a.Region == "" {
		a.Region = os.Getenv("AWS_REGION")
	}
	if a.Region == "" {
		a.Region = "us-east-1"
	}
}

func (w *AWSWebIdentity) applyDefaults(stateDir string) {
	if w.Audience == "" {
		w.Audience = "sts.amazonaws.com"
	}
	if w.Subject == "" {
		w.Subject = "credbroker"
	}
	if w.TokenTTL == 0 {
		w.TokenTTL = Duration(5 * time.Minute)
	}
	if w.KeyFile == "" && stateDir != "" {
		w.KeyFile = stateDir + "/oidc-signing-key.pem"
	}
}

func (w *AWSWebIdentity) validate(ps *problems, p fieldPath) {
	validateURL(ps, p.with("issuer"), w.Issuer)
	if w.Listen == "" {
		ps.add(p.with("listen"), "set the host:port to serve OIDC discovery and JWKS on, e.g. 127.0.0.1:8400", "not set")
	}
	if !strings.HasPrefix(w.KeyFile, "/") {
		ps.add(p.with("key_file"), "use an absolute path", "%q is not absolute", w.KeyFile)
	}
	if w.TokenTTL <= 0 || w.TokenTTL.D() > time.Hour {
		ps.add(p.with("token_ttl"), "use a duration up to 1h, e.g. 5m", "%s is out of range", w.TokenTTL)
	}
}

func (r *AWSRole) applyDefaults() {
	if r.MaxDuration == 0 {
		r.MaxDuration = Duration(time.Hour)
	}
}

func (a *AWSProvider) validate(ps *problems, p fieldPath) {
	for _, f := range []struct{ name, v string }{{"sts_endpoint", a.STSEndpoint}, {"iam_endpoint", a.IAMEndpoint}, {"endpoint_url", a.EndpointURL}} {
		if f.v != "" {
			validateURL(ps, p.with(f.name), f.v)
		}
	}
	if a.WebIdentity != nil {
		a.WebIdentity.validate(ps, p.with("web_identity"))
	}
	switch a.Revocation {
	case RevokeIAMDenyPolicy, RevokeMinIOTokens:
	default:
		ps.add(p.with("revocation"), "use iam-deny-policy (AWS) or minio-revoke-tokens (MinIO)",
			"%q is not a revocation method", a.Revocation)
	}
}

func validateURL(ps *problems, p fieldPath, v string) {
	if !strings.HasPrefix(v, "http://") && !strings.HasPrefix(v, "https://") {
		ps.add(p, "use an http(s) URL such as https://sts.eu-west-1.amazonaws.com", "%q is not an http(s) URL", v)
	}
}

func (r *AWSRole) validate(ps *problems, p fieldPath) {
	if !strings.HasPrefix(r.RoleARN, "arn:") {
		ps.add(p.with("role_arn"), "set the ARN of the role to assume, e.g. arn:aws:iam::123456789012:role/agent-readonly",
			"%q is not an ARN", r.RoleARN)
	}
	d := r.MaxDuration.D()
	if d < MinSTSDuration || d > 12*time.Hour {
		ps.add(p.with("max_duration"), "use a duration from 15m to 12h (the role's MaxSessionDuration)",
			"%s is outside STS's 15m..12h range", d)
	}
	raw, field := r.Policy, "policy"
	switch {
	case r.Policy != "" && r.PolicyFile != "":
		ps.add(p.with("policy_file"), "keep either policy or policy_file", "both policy and policy_file are set")
		return
	case r.PolicyFile != "":
		field = "policy_file"
		if !strings.HasPrefix(r.PolicyFile, "/") {
			ps.add(p.with(field), "use an absolute path", "%q is relative", r.PolicyFile)
			return
		}
		b, err := os.ReadFile(r.PolicyFile)
		if err != nil {
			ps.add(p.with(field), "point policy_file at a readable JSON policy", "%v", err)
			return
		}
		raw = string(b)
	case r.Policy == "":
		return // no session policy: the role's own permissions apply
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(raw)); err != nil {
		ps.add(p.with(field), "write the session policy as a JSON IAM policy document", "not valid JSON: %v", err)
		return
	}
	var doc struct {
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil || len(doc.Statement) == 0 {
		ps.add(p.with(field), `give the policy a "Statement"`, "not an IAM policy document")
		return
	}
	if n := buf.Len(); n > MaxSessionPolicyChars {
		ps.add(p.with(field), fmt.Sprintf("shorten it (STS allows %d characters of plaintext) or use policy_arns", MaxSessionPolicyChars),
			"the session policy is %d characters after removing whitespace", n)
		return
	}
	r.SessionPolicy = buf.String()
}
