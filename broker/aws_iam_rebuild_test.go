package broker_test

// Protocol-tested against iamtest (no IAM server runs here): the AWS
// provider's deny policy is rebuilt from the broker's store (through the
// journal the broker hands it) under its lock, so a stale read or a
// concurrent writer cannot drop a session's deny. These tests sit in the
// broker package because providers may not import it (depguard).

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/configs"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/leases/postgres"
	"github.com/credbroker/credbroker/leases/postgres/pgtest"
	"github.com/credbroker/credbroker/leases/sqlite"
	"github.com/credbroker/credbroker/providers"
	"github.com/credbroker/credbroker/providers/awssts"
	"github.com/credbroker/credbroker/providers/awssts/iamtest"
)

const (
	iamKeyID  = "AKIACREDBROKERTEST"
	iamSecret = "credbroker-test-secret-key"
)

var iamRoles = map[string]configs.Role{
	"agent-readonly": {Name: "agent-readonly", AWS: &configs.AWSRole{RoleARN: "arn:aws:iam::123456789012:role/agent-readonly"}},
	"agent-dev":      {Name: "agent-dev", AWS: &configs.AWSRole{RoleARN: "arn:aws:iam::123456789012:role/team/agent-dev"}},
}

// iamStandIn starts the IAM stand-in for iamRoles and gives the broker
// the AWS identity it checks signatures with.
func iamStandIn(t *testing.T) *iamtest.Server {
	t.Helper()
	srv := iamtest.Start(t, aws.Credentials{AccessKeyID: iamKeyID, SecretAccessKey: iamSecret}, "agent-readonly", "agent-dev")
	t.Setenv("AWS_ACCESS_KEY_ID", iamKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", iamSecret)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	return srv
}

// ledgerStore opens a real SQLite lease store and the broker's journal
// over it, which is what the daemon hands the provider.
func ledgerStore(t *testing.T) (leases.Store, providers.Revocations) {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, broker.NewJournal(st, nil, nil).(providers.Revocations)
}

// iamProviderOn builds a provider on srv (whose env newIAMProvider set)
// that rebuilds from rv.
func iamProviderOn(t *testing.T, srv *iamtest.Server, rv providers.Revocations) *awssts.Provider {
	t.Helper()
	p, err := awssts.New(context.Background(), configs.AWSProvider{
		Region: "eu-west-1", IAMEndpoint: srv.URL, STSEndpoint: "http://127.0.0.1:1", Revocation: configs.RevokeIAMDenyPolicy,
	}, iamRoles, slog.New(slog.NewTextHandler(io.Discard, nil)), awssts.WithRevocations(rv))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// endInStore records session id of role as ended the way the broker does
// before it calls Revoke (state ending, EndedAt set).
func endInStore(t *testing.T, st leases.Store, id, role string, expires time.Time, state leases.SessionState) {
	t.Helper()
	now := time.Now()
	s := leases.Session{ID: id, Role: role, UID: -1, CreatedAt: now.Add(-time.Minute), ExpiresAt: expires, State: state}
	if state == leases.SessionEnding || state == leases.SessionEnded {
		s.EndedAt, s.EndReason = now, "test"
	}
	if err := st.CreateSession(context.Background(), s); err != nil {
		t.Fatal(err)
	}
}

func revokeLease(id, role string, exp time.Time) leases.Lease {
	return leases.Lease{ID: "aws/sts/" + id, SessionID: id, Provider: "aws", Kind: awssts.KindSTS, ExpiresAt: exp,
		Data: map[string]string{"role": role, "role_arn": iamRoles[role].AWS.RoleARN}}
}

// deniedIDs are the session ids role's policy denies by SourceIdentity.
func deniedIDs(t *testing.T, srv *iamtest.Server, role string) []string {
	t.Helper()
	raw, ok := srv.Policy(role, awssts.PolicyName)
	if !ok {
		t.Fatalf("no %s policy on role %s", awssts.PolicyName, role)
	}
	var d struct {
		Statement []struct{ Condition map[string]map[string]any }
	}
	if err := json.Unmarshal([]byte(raw), &d); err != nil {
		t.Fatalf("policy on %s is not JSON: %v", role, err)
	}
	var out []string
	for _, st := range d.Statement {
		ids, _ := st.Condition["StringEquals"]["aws:SourceIdentity"].([]any)
		for _, id := range ids {
			out = append(out, id.(string))
		}
	}
	slices.Sort(out)
	return out
}

// TestIAMPolicyRebuiltFromStore: the policy holds a deny for every ended
// session of the role whose credentials may still be valid, as the store
// knows them, even after the stored document lost it; and none for live
// sessions, sessions whose credentials expired, or other roles' sessions.
func TestIAMPolicyRebuiltFromStore(t *testing.T) {
	srv := iamStandIn(t)
	st, rv := ledgerStore(t)
	p := iamProviderOn(t, srv, rv)
	now := time.Now()
	endInStore(t, st, "s-gone", "agent-dev", now.Add(20*time.Minute), leases.SessionEnded)
	// Its credentials can outlive the session by up to 15 min (STS's 900 s minimum).
	endInStore(t, st, "s-just-expired", "agent-dev", now.Add(-10*time.Minute), leases.SessionEnded)
	endInStore(t, st, "s-long-expired", "agent-dev", now.Add(-20*time.Minute), leases.SessionEnded)
	endInStore(t, st, "s-live", "agent-dev", now.Add(time.Hour), leases.SessionActive)
	endInStore(t, st, "s-other-role", "agent-readonly", now.Add(time.Hour), leases.SessionEnded)
	// Another writer (or an operator) left a document without s-gone.
	srv.SetPolicy("agent-dev", awssts.PolicyName, `{"Version":"2012-10-17","Statement":[]}`)

	endInStore(t, st, "s-now", "agent-dev", now.Add(30*time.Minute), leases.SessionEnding)
	if err := p.Revoke(context.Background(), revokeLease("s-now", "agent-dev", now.Add(30*time.Minute))); err != nil {
		t.Fatal(err)
	}
	want := []string{"s-gone", "s-just-expired", "s-now"}
	if got := deniedIDs(t, srv, "agent-dev"); !slices.Equal(got, want) {
		t.Fatalf("agent-dev denies %v; want %v (the store's ended sessions with credentials that may be valid)", got, want)
	}
}

// TestIAMStaleReadLosesNoDeny: IAM answers a Get from the document before
// the last Put (eventual consistency); the rebuild still keeps the first
// session's deny, because the store, not the Get, says what to deny.
func TestIAMStaleReadLosesNoDeny(t *testing.T) {
	srv := iamStandIn(t)
	st, rv := ledgerStore(t)
	p := iamProviderOn(t, srv, rv)
	exp := time.Now().Add(30 * time.Minute)
	for i, id := range []string{"s-first", "s-second"} {
		endInStore(t, st, id, "agent-dev", exp, leases.SessionEnding)
		if i == 1 {
			srv.StaleReads("agent-dev", 1) // the Get answers as if s-first's Put had not happened
		}
		if err := p.Revoke(context.Background(), revokeLease(id, "agent-dev", exp)); err != nil {
			t.Fatal(err)
		}
	}
	if got := deniedIDs(t, srv, "agent-dev"); !slices.Equal(got, []string{"s-first", "s-second"}) {
		t.Fatalf("after a stale read agent-dev denies %v; want both sessions", got)
	}
}

// TestIAMTwoBrokersEndingConcurrentlyLoseNoDeny: two brokers end sessions
// of one role at once: two providers over one SQLite store (the process
// lock), and two brokers with stores of their own on one PostgreSQL
// database (a fleet: the advisory lock). Broker A has read the policy and
// the store and is about to write when broker B ends another session:
// without one writer at a time, A's write would drop B's deny. Then many
// ends at once, with IAM answering in random order: every ended session is
// denied.
func TestIAMTwoBrokersEndingConcurrentlyLoseNoDeny(t *testing.T) {
	cases := []struct {
		name   string
		stores func(t *testing.T) (leases.Store, leases.Store)
	}{
		{"sqlite, one store", func(t *testing.T) (leases.Store, leases.Store) {
			st, _ := ledgerStore(t)
			return st, st
		}},
		{"postgres, a store per broker", func(t *testing.T) (leases.Store, leases.Store) {
			db := pgtest.NewDB(t)
			var out [2]leases.Store
			for i := range out {
				st, err := postgres.Open(t.Context(), db.DSN(), postgres.WithHostID(fmt.Sprintf("host-%d", i)))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				out[i] = st
			}
			return out[0], out[1]
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			st1, st2 := tc.stores(t)
			twoBrokersEnding(t, st1, st2)
		})
	}
}

func twoBrokersEnding(t *testing.T, st1, st2 leases.Store) {
	srv := iamStandIn(t)
	st := st1
	brokers := []*awssts.Provider{
		iamProviderOn(t, srv, broker.NewJournal(st1, nil, nil).(providers.Revocations)),
		iamProviderOn(t, srv, broker.NewJournal(st2, nil, nil).(providers.Revocations)),
	}
	exp := time.Now().Add(30 * time.Minute)
	revoke := func(b int, id string) <-chan error {
		done := make(chan error, 1)
		go func() { done <- brokers[b].Revoke(context.Background(), revokeLease(id, "agent-dev", exp)) }()
		return done
	}

	arrived, release := srv.HoldNextPut("agent-dev")
	defer release()
	endInStore(t, st, "s-a", "agent-dev", exp, leases.SessionEnding)
	doneA := revoke(0, "s-a")
	<-arrived // A is about to write what it read
	endInStore(t, st, "s-b", "agent-dev", exp, leases.SessionEnding)
	doneB := revoke(1, "s-b")
	var errB error
	select {
	case errB = <-doneB: // B did not wait for A (no lock): A now overwrites
	case <-time.After(500 * time.Millisecond): // B waits for A's lock
		release()
		errB = <-doneB
	}
	release()
	if errA := <-doneA; errA != nil || errB != nil {
		t.Fatalf("revoke s-a: %v; revoke s-b: %v", errA, errB)
	}
	if got := deniedIDs(t, srv, "agent-dev"); !slices.Equal(got, []string{"s-a", "s-b"}) {
		t.Fatalf("after two brokers ended sessions at once agent-dev denies %v; want [s-a s-b]", got)
	}

	srv.Jitter(15 * time.Millisecond)
	var (
		wg   sync.WaitGroup
		want = []string{"s-a", "s-b"}
	)
	for i := range 24 {
		id := fmt.Sprintf("s-%02d", i)
		want = append(want, id)
		wg.Go(func() {
			endInStore(t, st, id, "agent-dev", exp, leases.SessionEnding)
			if err := <-revoke(i%2, id); err != nil {
				t.Errorf("revoke %s: %v", id, err)
			}
		})
	}
	wg.Wait()
	slices.Sort(want)
	if got := deniedIDs(t, srv, "agent-dev"); !slices.Equal(got, want) {
		t.Fatalf("agent-dev denies %d sessions %v; want all %d", len(got), got, len(want))
	}
}
