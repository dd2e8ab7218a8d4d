package awssts_test

// No IAM server can be had on this machine: these tests check the IAM
// revocation requests (actions, role names, policy documents, SigV4
// signatures) against iamtest, a local endpoint that verifies them. The
// path is protocol-tested, not run against AWS.

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/awssts/iamtest"
	"github.com/credbroker/credbroker/providers/providertest"
)

const (
	brokerKeyID  = "AKIACREDBROKERTEST"
	brokerSecret = "credbroker-test-secret-key"
)

func newIAMProvider(t *testing.T, roles map[string]configs.Role) (*awssts.Provider, *iamtest.Server) {
	t.Helper()
	srv := iamtest.Start(t, aws.Credentials{AccessKeyID: brokerKeyID, SecretAccessKey: brokerSecret}, "agent-readonly", "agent-dev")
	t.Setenv("AWS_ACCESS_KEY_ID", brokerKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", brokerSecret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	p, err := awssts.New(context.Background(), configs.AWSProvider{
		Region: "eu-west-1", IAMEndpoint: srv.URL, STSEndpoint: "http://127.0.0.1:1", Revocation: configs.RevokeIAMDenyPolicy,
	}, roles, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return p, srv
}

var iamRoles = map[string]configs.Role{
	"agent-readonly": {Name: "agent-readonly", AWS: &configs.AWSRole{RoleARN: "arn:aws:iam::123456789012:role/agent-readonly"}},
	"agent-dev":      {Name: "agent-dev", AWS: &configs.AWSRole{RoleARN: "arn:aws:iam::123456789012:role/team/agent-dev"}},
}

type doc struct {
	Version   string
	Statement []struct {
		Sid, Effect, Action, Resource string
		Condition                     map[string]map[string]any
	}
}

func policyOf(t *testing.T, srv *iamtest.Server, role string) doc {
	t.Helper()
	raw, ok := srv.Policy(role, awssts.PolicyName)
	if !ok {
		t.Fatalf("no %s policy on role %s", awssts.PolicyName, role)
	}
	var d doc
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("policy on %s is not JSON: %v", role, err)
	}
	return d
}

func TestIAMRevokeSessionDeniesSourceIdentity(t *testing.T) {
	p, srv := newIAMProvider(t, iamRoles)
	ctx := context.Background()
	exp := time.Now().Add(40 * time.Minute)
	for _, sid := range []string{"s-one", "s-two", "s-one"} {
		l := leases.Lease{ID: "aws/sts/" + sid, SessionID: sid, Provider: "aws", Kind: awssts.KindSTS, ExpiresAt: exp,
			Data: map[string]string{"role": "agent-readonly", "role_arn": iamRoles["agent-readonly"].AWS.RoleARN}}
		if err := p.Revoke(ctx, l); err != nil {
			t.Fatalf("revoke %s: %v", sid, err)
		}
	}
	d := policyOf(t, srv, "agent-readonly")
	if d.Version != "2012-10-17" || len(d.Statement) != 1 {
		t.Fatalf("policy = %+v; want one statement", d)
	}
	st := d.Statement[0]
	if st.Effect != "Deny" || st.Action != "*" || st.Resource != "*" || !strings.HasPrefix(st.Sid, "CredbrokerRevokedUntil") {
		t.Errorf("statement = %+v; want a Deny * * for revoked sessions", st)
	}
	ids, _ := st.Condition["StringEquals"]["aws:SourceIdentity"].([]any)
	if len(ids) != 2 || ids[0] != "s-one" || ids[1] != "s-two" {
		t.Errorf("denied source identities = %v, want [s-one s-two] once each", ids)
	}
	if _, ok := srv.Policy("agent-dev", awssts.PolicyName); ok {
		t.Error("a session of agent-readonly touched agent-dev's policy")
	}
	for _, c := range srv.Calls {
		if c.RoleName != "agent-readonly" || c.PolicyName != awssts.PolicyName {
			t.Errorf("call %+v: wrong role or policy name", c)
		}
	}
}

// TestIAMRevokeAllDeniesTokensIssuedBefore: the cut-off lies RevokeAllSkew
// past the end of the call, so keys issued in the same second (the policy
// holds whole seconds) or by an AWS clock ahead of the broker's are denied
// too; each live session also gets its own SourceIdentity deny; and the
// provider mints nothing that the cut-off would deny.
func TestIAMRevokeAllDeniesTokensIssuedBefore(t *testing.T) {
	p, srv := newIAMProvider(t, iamRoles)
	exp := time.Now().Add(40 * time.Minute)
	live := []leases.Lease{
		{ID: "aws/sts/s-live1", SessionID: "s-live1", Provider: "aws", Kind: awssts.KindSTS, ExpiresAt: exp,
			Data: map[string]string{"role": "agent-readonly", "role_arn": iamRoles["agent-readonly"].AWS.RoleARN}},
		{ID: "aws/sts/s-live2", SessionID: "s-live2", Provider: "aws", Kind: awssts.KindSTS, ExpiresAt: exp,
			Data: map[string]string{"role": "agent-dev", "role_arn": iamRoles["agent-dev"].AWS.RoleARN}},
		// Minted by another broker for a role this config does not assume.
		{ID: "aws/sts/s-other", SessionID: "s-other", Provider: "aws", Kind: awssts.KindSTS, ExpiresAt: exp,
			Data: map[string]string{"role": "x", "role_arn": "arn:aws:iam::123456789012:role/elsewhere"}},
	}
	covered, err := p.RevokeAll(context.Background(), live)
	if err != nil {
		t.Fatal(err)
	}
	issuedLast := time.Now() // any key STS issued during the call was issued before this
	slices.Sort(covered)     // the roles are updated in no fixed order
	if len(covered) != 2 || covered[0] != "aws/sts/s-live1" || covered[1] != "aws/sts/s-live2" {
		t.Errorf("covered = %v; want the two leases of the roles this broker assumes, not s-other", covered)
	}
	for role, sid := range map[string]string{"agent-readonly": "s-live1", "agent-dev": "s-live2"} { // agent-dev has a path: team/agent-dev
		d := policyOf(t, srv, role)
		var cut string
		var denied []any
		for _, st := range d.Statement {
			if st.Sid == "CredbrokerRevokeIssuedBefore" {
				cut, _ = st.Condition["DateLessThan"]["aws:TokenIssueTime"].(string)
			}
			if ids, ok := st.Condition["StringEquals"]["aws:SourceIdentity"].([]any); ok {
				denied = append(denied, ids...)
			}
		}
		c, err := time.Parse(time.RFC3339, cut)
		if err != nil || !c.After(issuedLast.Add(awssts.RevokeAllSkew)) || c.After(issuedLast.Add(awssts.RevokeAllSkew+3*time.Second)) {
			t.Errorf("%s: TokenIssueTime cut-off %q; want after the end of the call plus %s, rounded up", role, cut, awssts.RevokeAllSkew)
		}
		if len(denied) != 1 || denied[0] != sid {
			t.Errorf("%s: per-session denies %v; want [%s] (the live session of this role)", role, denied, sid)
		}
	}
	// STS is unreachable in this test (127.0.0.1:1): the refusal must come
	// before any call, and say when minting resumes.
	_, err = p.Mint(context.Background(), providertest.NewSession("agent-readonly", time.Hour), iamRoles["agent-readonly"])
	if err == nil || !strings.Contains(err.Error(), "retry in") || strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("mint after revoke all: %v; want a refusal naming when to retry, before any STS call", err)
	}
}

// TestIAMOrphanRevokesOnEveryRole: after a crash the role of an unrecorded
// mint is unknown, so the deny goes on every configured role.
func TestIAMOrphanRevokesOnEveryRole(t *testing.T) {
	p, srv := newIAMProvider(t, iamRoles)
	ctx := context.Background()
	orphans, err := p.FindOrphans(ctx, "s-crashed", nil)
	if err != nil || len(orphans) != 1 {
		t.Fatalf("find orphans = %v, %v; want one session lease", orphans, err)
	}
	if err := p.Revoke(ctx, orphans[0]); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{"agent-readonly", "agent-dev"} {
		if !strings.Contains(mustPolicy(t, srv, role), `"s-crashed"`) {
			t.Errorf("orphan not denied on %s", role)
		}
	}
}

func mustPolicy(t *testing.T, srv *iamtest.Server, role string) string {
	t.Helper()
	raw, ok := srv.Policy(role, awssts.PolicyName)
	if !ok {
		t.Fatalf("no policy on %s", role)
	}
	return raw
}

// TestIAMPolicyOverflowFallsBack: when the deny list would pass the size
// limit, the broker replaces it with a TokenIssueTime cut-off.
func TestIAMPolicyOverflowFallsBack(t *testing.T) {
	p, srv := newIAMProvider(t, iamRoles)
	ctx := context.Background()
	exp := time.Now().Add(30 * time.Minute)
	notices := 0
	for i := range 600 {
		sid := "s-" + strings.Repeat("x", 10) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
		l := leases.Lease{SessionID: sid, ExpiresAt: exp, Data: map[string]string{"role_arn": iamRoles["agent-dev"].AWS.RoleARN}}
		err := p.Revoke(ctx, l)
		var n *providers.Notice
		switch {
		case errors.As(err, &n):
			notices++
			if !strings.Contains(n.Msg, "TokenIssueTime cut-off") || !strings.Contains(n.Msg, "agent-dev") {
				t.Fatalf("notice %q does not say what happened to which role", n.Msg)
			}
		case err != nil:
			t.Fatalf("revoke #%d: %v", i, err)
		}
	}
	if notices == 0 {
		t.Fatal("the fallback was not reported as a notice (the broker audits notices)")
	}
	raw := mustPolicy(t, srv, "agent-dev")
	if len(raw) > 10240 {
		t.Fatalf("policy grew to %d characters", len(raw))
	}
	if !strings.Contains(raw, "CredbrokerRevokeIssuedBefore") {
		t.Fatal("overflow did not fall back to a TokenIssueTime cut-off")
	}
}

// TestIAMStandInRejectsBadSignature shows the stand-in really checks SigV4:
// a broker holding the wrong secret key is refused.
func TestIAMStandInRejectsBadSignature(t *testing.T) {
	_, srv := newIAMProvider(t, iamRoles)
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-right-key")
	p, err := awssts.New(context.Background(), configs.AWSProvider{
		Region: "eu-west-1", IAMEndpoint: srv.URL, Revocation: configs.RevokeIAMDenyPolicy,
	}, iamRoles, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_, err = p.RevokeAll(context.Background(), nil)
	if err == nil || !strings.Contains(err.Error(), "SignatureDoesNotMatch") {
		t.Fatalf("revoke all with a wrong key: %v; want SignatureDoesNotMatch", err)
	}
	if f := srv.TakeFailures(); len(f) == 0 {
		t.Fatal("the stand-in recorded no refusal")
	}
	if strings.Contains(err.Error(), "not-the-right-key") {
		t.Fatal("the error contains the secret key")
	}
}
