package broker_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/credbroker/credbroker/broker"
	"github.com/credbroker/credbroker/leases"
	"github.com/credbroker/credbroker/providers/awssts"
)

func TestAWSSessionLifecycle(t *testing.T) {
	h := newHarness(t, withMinIO())
	ctx := context.Background()
	si := h.start("agent-s3")
	id, sk, tok := h.awsCreds(si)
	if !h.s3Works(id, sk, tok) {
		t.Fatal("fresh session credentials cannot read the readable bucket")
	}
	for _, f := range []string{awssts.ConfigFile, awssts.CredentialsFile, awssts.ProcessFile} {
		fi, err := os.Stat(filepath.Join(si.Dir, f))
		if err != nil || fi.Mode() != 0o400 {
			t.Errorf("%s: %v mode %v, want 0400", f, err, fi.Mode())
		}
	}
	env, _ := os.ReadFile(filepath.Join(si.Dir, "env"))
	for _, want := range []string{"AWS_CONFIG_FILE='${CREDBROKER_SESSION_DIR}/aws/config'", "AWS_PROFILE=credbroker", "AWS_ENDPOINT_URL="} {
		if !strings.Contains(string(env), want) {
			t.Errorf("env file lacks %s:\n%s", want, env)
		}
	}
	if _, err := h.b.EndSession(ctx, h.caller, si.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if h.s3Works(id, sk, tok) {
		t.Fatal("AWS credentials still work after session end")
	}
	h.assertNoLeaks()
}

// TestAWSAndVaultAllOrNothing: with MinIO down, a role needing Vault and
// AWS fails, names the provider, and the Vault token minted for the same
// session is revoked.
func TestAWSAndVaultAllOrNothing(t *testing.T) {
	h := newHarness(t, withMinIO())
	h.minioProxy.SetUp(false)
	_, err := h.b.StartSession(context.Background(), h.caller, broker.StartRequest{Role: "agent-full"})
	if !errors.Is(err, broker.ErrProvider) || !strings.Contains(err.Error(), "aws:") {
		t.Fatalf("start with MinIO down: %v; want ErrProvider naming aws", err)
	}
	if n := h.sessionTokens(); n != 0 {
		t.Fatalf("%d Vault tokens of the failed session are still valid", n)
	}
	if ids, _ := h.w.List(); len(ids) != 0 {
		t.Fatalf("session dirs left: %v", ids)
	}
}

func TestAWSRevokeAll(t *testing.T) {
	h := newHarness(t, withMinIO())
	ctx := context.Background()
	a := h.start("agent-full")
	b := h.start("agent-s3")
	vtok := h.token(a)
	ida, ska, toka := h.awsCreds(a)
	idb, skb, tokb := h.awsCreds(b)
	rep, err := h.b.RevokeAll(ctx, h.caller, "aws incident")
	if err != nil || !rep.Complete {
		t.Fatalf("revoke all: %+v %v", rep, err)
	}
	if h.s3Works(ida, ska, toka) || h.s3Works(idb, skb, tokb) {
		t.Fatal("AWS credentials work after revoke --all")
	}
	if h.tokenValid(vtok) {
		t.Fatal("Vault token valid after revoke --all")
	}
	h.assertNoLeaks()
}

// TestAWSRefresherRemints: a session longer than the credentials' life is
// refreshed past 80 % of it; the files are replaced and the new keys work.
func TestAWSRefresherRemints(t *testing.T) {
	h := newHarness(t, withMinIO())
	ctx := context.Background()
	si, err := h.b.StartSession(ctx, h.caller, broker.StartRequest{Role: "agent-s3", TTL: "2h"})
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := h.awsCreds(si)
	ls, _ := h.st.ListLeases(ctx, si.ID)
	if len(ls) != 1 || time.Until(ls[0].ExpiresAt) > 61*time.Minute {
		t.Fatalf("lease %+v: want credentials capped at the role's 1h max_duration", ls)
	}
	h.offset.Store(int64(41 * time.Minute)) // 68 % of the credentials' life
	h.b.Tick(ctx)
	if nid, _, _ := h.awsCreds(si); nid != id {
		t.Fatal("credentials re-minted before 80 % of their life")
	}
	h.offset.Store(int64(49 * time.Minute)) // 82 %
	h.b.Tick(ctx)
	nid, nsk, ntok := h.awsCreds(si)
	if nid == id {
		t.Fatal("credentials not re-minted past 80 % of their life")
	}
	if !h.s3Works(nid, nsk, ntok) {
		t.Fatal("refreshed credentials do not work")
	}
	got, _ := h.st.GetLease(ctx, ls[0].ID)
	if got.ExternalID != nid || got.State != leases.LeaseActive {
		t.Errorf("lease after refresh: %+v", got)
	}
}
