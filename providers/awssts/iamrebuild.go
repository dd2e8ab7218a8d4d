package awssts

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"

	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/providers"
)

// denial is one session whose credentials the policy must deny until.
type denial struct {
	id    string
	until time.Time
}

// rebuild writes roleARN's revocation policy anew under the fleet-wide
// lock of that role: a SourceIdentity deny for each ended session of the
// store whose credentials may still be valid, for each session the
// current policy already denies, and for extra; and the latest of cut,
// the cut-off already on the policy and the one this broker knows. The
// store is the source of truth, so neither another broker's concurrent
// update nor a Get that IAM answers from an older copy can drop a deny:
// whoever writes last writes every ended session the store holds. When the
// policy would pass maxPolicyChars it falls back to a cut-off (see
// fallback).
func (r *iamRevoker) rebuild(ctx context.Context, roleARN string, extra []denial, cut time.Time) error {
	if r.ledger == nil {
		return r.rebuildLocked(ctx, roleARN, extra, cut)
	}
	return r.ledger.WithLock(ctx, "aws-iam-policy/"+roleARN, func(ctx context.Context) error {
		return r.rebuildLocked(ctx, roleARN, extra, cut)
	})
}

func (r *iamRevoker) rebuildLocked(ctx context.Context, roleARN string, extra []denial, cut time.Time) error {
	name, err := roleName(roleARN)
	if err != nil {
		return err
	}
	cur, err := r.get(ctx, name)
	if err != nil {
		return err
	}
	now := r.now()
	cut = latest(cut, issuedBefore(cur), r.mintableFrom(roleARN))
	ended, err := r.endedDenials(ctx, roleARN, now, cut)
	if err != nil {
		return err
	}
	doc := &policyDoc{Version: "2012-10-17"}
	for _, s := range cur.Statement {
		if !strings.HasPrefix(s.Sid, sidSessionsPrefix) && s.Sid != sidIssuedBefore {
			doc.Statement = append(doc.Statement, s)
		}
	}
	if !cut.IsZero() {
		setIssuedBefore(doc, cut)
	}
	merged := latestDenials(docDenials(cur), ended, extra)
	for _, id := range slices.Sorted(maps.Keys(merged)) {
		if until := merged[id]; until.After(now) {
			addSession(doc, id, until)
		}
	}
	prune(doc, now)
	b, _ := json.Marshal(doc)
	var notice error
	if len(b) > maxPolicyChars {
		cut, notice = r.fallback(ctx, roleARN, name, doc, now, len(b))
		b, _ = json.Marshal(doc)
	}
	if _, err := r.iam.PutRolePolicy(ctx, &iam.PutRolePolicyInput{
		RoleName: aws.String(name), PolicyName: aws.String(PolicyName), PolicyDocument: aws.String(string(b)),
	}); err != nil {
		return fmt.Errorf("iam put role policy %s on %s: %w", PolicyName, name, describe(err))
	}
	if !cut.IsZero() {
		r.raiseCutoff(roleARN, cut)
	}
	if notice != nil {
		r.renewLive(ctx, roleARN, cut)
	}
	return notice
}

// endedDenials are the store's ended sessions of roleARN's roles whose
// credentials may still be valid: STS credentials outlive their session by
// at most the 900 s STS minimum. A session that ended more than the clock
// skew margin before the cut-off needs no deny of its own: every key it
// had was issued before it ended, so before the cut-off.
func (r *iamRevoker) endedDenials(ctx context.Context, roleARN string, now, cut time.Time) ([]denial, error) {
	if r.ledger == nil {
		return nil, nil
	}
	ss, err := r.ledger.EndedSessions(ctx, now.Add(-configs.MinSTSDuration))
	if err != nil {
		return nil, fmt.Errorf("list ended sessions for the revocation policy of %s: %w", roleARN, err)
	}
	roles := map[string]bool{}
	for _, n := range r.roleNames[roleARN] {
		roles[n] = true
	}
	var out []denial
	for _, s := range ss {
		if !roles[s.Role] {
			continue
		}
		if !cut.IsZero() && !s.EndedAt.IsZero() && s.EndedAt.Add(RevokeAllSkew).Before(cut) {
			continue
		}
		out = append(out, denial{s.ID, s.ExpiresAt.Add(configs.MinSTSDuration)})
	}
	return out, nil
}

// fallback replaces doc's per-session denies, which would pass the size
// limit, by a TokenIssueTime cut-off RevokeAllSkew past now (rounded up to
// the second): every ended session's keys were issued before now, so
// before the cut-off as AWS's clock stamps them. The cut-off denies the
// role's live sessions too, until the broker re-mints them once it has
// passed (renewLive). It returns the cut-off and the notice the broker
// audits.
func (r *iamRevoker) fallback(_ context.Context, roleARN, name string, doc *policyDoc, now time.Time, chars int) (time.Time, error) {
	cut := now.Add(RevokeAllSkew).UTC().Truncate(time.Second).Add(time.Second)
	r.log.Warn("revocation policy full: falling back to a TokenIssueTime cut-off; live sessions of this role are denied until re-minted after it",
		"role", roleARN, "chars", chars, "cutoff", cut)
	kept := doc.Statement[:0]
	for _, s := range doc.Statement {
		if !strings.HasPrefix(s.Sid, sidSessionsPrefix) {
			kept = append(kept, s)
		}
	}
	doc.Statement = kept
	setIssuedBefore(doc, cut)
	return cut, &providers.Notice{Msg: fmt.Sprintf("aws: the revocation policy on %s would pass %d characters: "+
		"replaced the per-session denies by a TokenIssueTime cut-off at %s, which also denies the role's live sessions "+
		"until the broker re-mints their credentials after it", name, maxPolicyChars, cut.Format(time.RFC3339))}
}

// renewLive asks the broker to re-mint the live sessions of roleARN's
// roles once cut has passed, so that they keep working.
func (r *iamRevoker) renewLive(ctx context.Context, roleARN string, cut time.Time) {
	if r.ledger == nil {
		r.log.Warn("no broker store: live sessions of the role stay denied until their next refresh", "role", roleARN)
		return
	}
	n, err := r.ledger.RenewEarly(ctx, Name, r.roleNames[roleARN], cut.Add(time.Second))
	if err != nil {
		r.log.Error("mark live sessions for re-minting after the cut-off; they stay denied until their next refresh",
			"role", roleARN, "err", err)
		return
	}
	r.log.Info("live sessions will be re-minted after the cut-off", "role", roleARN, "leases", n, "at", cut.Add(time.Second))
}

// docDenials are the per-session denies of d, each until the end of its
// bucket.
func docDenials(d *policyDoc) []denial {
	var out []denial
	for _, s := range d.Statement {
		if !strings.HasPrefix(s.Sid, sidSessionsPrefix) {
			continue
		}
		t, err := time.Parse(sidTimeFormat, strings.TrimPrefix(s.Sid, sidSessionsPrefix))
		if err != nil {
			continue
		}
		for _, id := range sourceIdentities(s) {
			out = append(out, denial{id, t.Add(-time.Nanosecond)}) // addSession rounds it up to t again
		}
	}
	return out
}

// latestDenials merges lists of denials into one per session, each until
// the latest time any list gives it (one statement bucket per session).
func latestDenials(lists ...[]denial) map[string]time.Time {
	out := map[string]time.Time{}
	for _, l := range lists {
		for _, d := range l {
			if d.until.After(out[d.id]) {
				out[d.id] = d.until
			}
		}
	}
	return out
}

// issuedBefore is d's TokenIssueTime cut-off (zero if none).
func issuedBefore(d *policyDoc) time.Time {
	for _, s := range d.Statement {
		if s.Sid == sidIssuedBefore {
			v, _ := s.Condition["DateLessThan"]["aws:TokenIssueTime"].(string)
			t, _ := time.Parse(time.RFC3339, v)
			return t
		}
	}
	return time.Time{}
}

func latest(ts ...time.Time) time.Time {
	var m time.Time
	for _, t := range ts {
		if t.After(m) {
			m = t
		}
	}
	return m
}

func roleNamesByARN(roles map[string]configs.Role) map[string][]string {
	out := map[string][]string{}
	for n, r := range roles {
		if r.AWS != nil {
			out[r.AWS.RoleARN] = append(out[r.AWS.RoleARN], n)
		}
	}
	return out
}
