package awssts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers"
)

// PolicyName is the inline policy the broker keeps on every role it assumes.
const PolicyName = "credbroker-revocations"

// maxPolicyChars keeps the inline policy under IAM's 10,240-character
// limit for a role's inline policies, with room for the role's others.
const maxPolicyChars = 8192

const (
	sidSessionsPrefix = "CredbrokerRevokedUntil"
	sidIssuedBefore   = "CredbrokerRevokeIssuedBefore"
	sidTimeFormat     = "200601021504"
)

// iamRevoker revokes the way AWS's own "revoke active sessions" does: a
// Deny-everything statement on the role, conditioned on the session's
// aws:SourceIdentity (one session) or on aws:TokenIssueTime (all).
// Statements for ended sessions are grouped by the 15-minute bucket their
// credentials expire in and pruned once that time has passed.
type iamRevoker struct {
	iam   IAMAPI
	roles []string // every role ARN the config assumes
	now   func() time.Time
	log   *slog.Logger

	// ledger is the broker's view of the store (nil in tools and some
	// tests): the ended sessions the policy is rebuilt from, the fleet-wide
	// lock, and early renewal after a fallback.
	ledger providers.Revocations
	// roleNames are the config's role names by role ARN, to match the
	// store's sessions (which name roles) to the policy of a role ARN.
	roleNames map[string][]string

	cutoffs sync.Map // role ARN → time.Time: the latest TokenIssueTime cut-off written or read; read by Mint without p.mu
}

// RevokeAllSkew is added to the broker's clock for revoke --all's
// aws:TokenIssueTime cut-off. STS stamps TokenIssueTime with AWS's clock,
// and the cut-off is written in whole seconds: without a margin, keys
// issued in the same second as the incident, or while AWS's clock runs
// ahead of the broker's, stay valid. Five minutes is the clock skew SigV4
// itself tolerates, so a broker further off than that cannot call AWS at
// all. Until the cut-off has passed the provider mints nothing (AWS would
// deny it at once); the incident lock refuses new sessions anyway, so this
// only shows when the incident is cleared within five minutes.
const RevokeAllSkew = 5 * time.Minute

type policyDoc struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Sid       string                    `json:"Sid"`
	Effect    string                    `json:"Effect"`
	Action    string                    `json:"Action"`
	Resource  string                    `json:"Resource"`
	Condition map[string]map[string]any `json:"Condition"`
}

func (r *iamRevoker) assumeOptions(string) []func(*sts.Options) { return nil }

func (r *iamRevoker) revokeSession(ctx context.Context, sessionID, roleARN string, until time.Time) error {
	targets := r.roles
	if roleARN != "" {
		targets = []string{roleARN}
	}
	var notices []string
	for _, arn := range targets {
		if err := r.rebuild(ctx, arn, []denial{{sessionID, until}}, time.Time{}); err != nil {
			var n *providers.Notice
			if !errors.As(err, &n) {
				return err
			}
			notices = append(notices, n.Msg)
		}
	}
	if len(notices) > 0 {
		return &providers.Notice{Msg: strings.Join(notices, "; ")}
	}
	return nil
}

// revokeAll writes, on every role the config assumes, a TokenIssueTime
// cut-off RevokeAllSkew ahead of now (rounded up to the second), plus a
// SourceIdentity deny for each session of ls on that role whose
// credentials have not expired: those hold even if the cut-off is later
// moved or pruned. It covers the leases of the roles it updated.
func (r *iamRevoker) revokeAll(ctx context.Context, ls []leases.Lease) ([]string, error) {
	now := r.now()
	cut := now.Add(RevokeAllSkew).UTC().Truncate(time.Second).Add(time.Second)
	byRole := map[string][]leases.Lease{}
	for _, l := range ls {
		if arn := l.Data["role_arn"]; arn != "" {
			byRole[arn] = append(byRole[arn], l)
		}
	}
	var (
		errs    []error
		covered []string
	)
	for _, arn := range r.roles {
		live := byRole[arn]
		var denials []denial
		for _, l := range live {
			until := l.ExpiresAt
			if until.IsZero() {
				until = now.Add(12 * time.Hour)
			}
			denials = append(denials, denial{l.SessionID, until})
		}
		err := r.rebuild(ctx, arn, denials, cut)
		var n *providers.Notice
		if err != nil && !errors.As(err, &n) {
			errs = append(errs, err)
			continue
		}
		covered = append(covered, providers.IDs(live)...)
	}
	return covered, errors.Join(errs...)
}

func (r *iamRevoker) leaseData(context.Context) map[string]string { return nil }

// mintableFrom is the latest cut-off on roleARN's policy (revoke --all's
// or an overflow's): credentials issued before it are denied at once.
func (r *iamRevoker) mintableFrom(roleARN string) time.Time {
	if c, ok := r.cutoffs.Load(roleARN); ok {
		return c.(time.Time)
	}
	return time.Time{}
}

// raiseCutoff records cut as roleARN's cut-off if it is later than the
// one known (a cut-off only moves forward).
func (r *iamRevoker) raiseCutoff(roleARN string, cut time.Time) {
	for {
		old, loaded := r.cutoffs.LoadOrStore(roleARN, cut)
		if !loaded {
			return
		}
		if !cut.After(old.(time.Time)) || r.cutoffs.CompareAndSwap(roleARN, old, cut) {
			return
		}
	}
}

func (r *iamRevoker) get(ctx context.Context, role string) (*policyDoc, error) {
	out, err := r.iam.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: aws.String(role), PolicyName: aws.String(PolicyName)})
	var nse *iamtypes.NoSuchEntityException
	if errors.As(err, &nse) {
		return &policyDoc{Version: "2012-10-17"}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("iam get role policy %s on %s: %w", PolicyName, role, describe(err))
	}
	raw, err := url.QueryUnescape(aws.ToString(out.PolicyDocument)) // IAM returns it URL-encoded
	if err != nil {
		return nil, fmt.Errorf("iam policy %s on %s: %w", PolicyName, role, err)
	}
	var d policyDoc
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		return nil, fmt.Errorf("iam policy %s on %s is not credbroker's JSON: %w", PolicyName, role, err)
	}
	return &d, nil
}

func denyStatement(sid, op, key string, v any) statement {
	return statement{Sid: sid, Effect: "Deny", Action: "*", Resource: "*",
		Condition: map[string]map[string]any{op: {key: v}}}
}

// addSession adds sessionID to the statement of the bucket its credentials
// expire in (rounded up to 15 minutes).
func addSession(d *policyDoc, sessionID string, until time.Time) {
	bucket := until.UTC().Truncate(15 * time.Minute).Add(15 * time.Minute)
	sid := sidSessionsPrefix + bucket.Format(sidTimeFormat)
	for i, s := range d.Statement {
		if s.Sid != sid {
			continue
		}
		ids := sourceIdentities(s)
		for _, id := range ids {
			if id == sessionID {
				return
			}
		}
		ids = append(ids, sessionID)
		sort.Strings(ids)
		d.Statement[i] = denyStatement(sid, "StringEquals", "aws:SourceIdentity", ids)
		return
	}
	d.Statement = append(d.Statement, denyStatement(sid, "StringEquals", "aws:SourceIdentity", []string{sessionID}))
}

func sourceIdentities(s statement) []string {
	var ids []string
	switch v := s.Condition["StringEquals"]["aws:SourceIdentity"].(type) {
	case []any:
		for _, x := range v {
			if str, ok := x.(string); ok {
				ids = append(ids, str)
			}
		}
	case []string:
		ids = append(ids, v...)
	case string:
		ids = append(ids, v)
	}
	return ids
}

// setIssuedBefore denies every credential issued before cut (only moving
// the cut-off forward).
func setIssuedBefore(d *policyDoc, cut time.Time) {
	st := denyStatement(sidIssuedBefore, "DateLessThan", "aws:TokenIssueTime", cut.Format(time.RFC3339))
	for i, s := range d.Statement {
		if s.Sid == sidIssuedBefore {
			if old, _ := s.Condition["DateLessThan"]["aws:TokenIssueTime"].(string); old > st.Condition["DateLessThan"]["aws:TokenIssueTime"].(string) {
				return
			}
			d.Statement[i] = st
			return
		}
	}
	d.Statement = append(d.Statement, st)
}

// prune drops session buckets whose credentials have all expired, and the
// issued-before cut-off once every credential issued before it has expired
// (12 h, STS's longest).
func prune(d *policyDoc, now time.Time) {
	kept := d.Statement[:0]
	for _, s := range d.Statement {
		switch {
		case strings.HasPrefix(s.Sid, sidSessionsPrefix):
			t, err := time.Parse(sidTimeFormat, strings.TrimPrefix(s.Sid, sidSessionsPrefix))
			if err == nil && t.Before(now) {
				continue
			}
		case s.Sid == sidIssuedBefore:
			v, _ := s.Condition["DateLessThan"]["aws:TokenIssueTime"].(string)
			if t, err := time.Parse(time.RFC3339, v); err == nil && t.Add(12*time.Hour).Before(now) {
				continue
			}
		}
		kept = append(kept, s)
	}
	d.Statement = kept
}

// roleName is the IAM role name in an ARN (arn:aws:iam::123:role/path/name).
func roleName(arn string) (string, error) {
	_, rest, ok := strings.Cut(arn, ":role/")
	if !ok || rest == "" {
		return "", fmt.Errorf("%q is not an IAM role ARN", arn)
	}
	return rest[strings.LastIndex(rest, "/")+1:], nil
}
